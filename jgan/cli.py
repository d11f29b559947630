"""What the three command-line scripts share: one-sentence errors and exit codes, flags whose
type, range and meaning come from jgan.schema, and the README's flag tables."""
import argparse
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Annotated, get_args

from pydantic import ConfigDict, TypeAdapter, ValidationError

from jgan import schema
from jgan.errors import ConfigError, JganError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help shows a flag's default where it has one (not None, not off)."""

    def _get_help_string(self, action):
        if action.default in (None, False, []):
            return action.help
        return super()._get_help_string(action)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a --debug flag and usage errors that exit with code 2 in one sentence."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        self.add_argument("--debug", action="store_true",
                          help="show the full traceback when an error occurs")

    def error(self, message):
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see --help)\n")


def checked(annotation, allowed):
    """An argparse `type`: the flag's text as a value of `annotation` (a pydantic type), refused
    with its range in words (`allowed`)."""
    adapter = TypeAdapter(annotation, config=ConfigDict(allow_inf_nan=False))

    def parse(text):
        try:
            return adapter.validate_python(None if text == "null" else text, strict=False)
        except ValidationError:
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text!r}") from None
    return parse


def value_flag(group, flag, annotation, meaning, **kwargs):
    """A flag whose value is checked against `annotation` (e.g. Annotated[int, Field(ge=1)])."""
    allowed = schema.words(annotation)
    return group.add_argument(flag, type=checked(annotation, allowed), metavar=_metavar(get_args(annotation)[0]),
                              help=f"{meaning}; {allowed}", **kwargs)


def _metavar(kind):
    return {int: "N", float: "X"}.get(kind, "TEXT")


def config_flag(group, flag, field, meaning=None, **kwargs):
    """A flag that sets a configuration key: type, range and meaning are the schema's `field`'s."""
    allowed = schema.allowed_values(field)
    kind, choices = schema.value_type(field)
    annotation = Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
    parse = str if choices else checked(annotation, allowed)
    metavar = None if choices else _metavar(kind)
    action = group.add_argument(flag, type=parse, choices=choices, metavar=metavar,
                                help=f"{meaning or field.description}; {allowed}", **kwargs)
    action.from_config = True    # its default is the configuration's
    return action


def flag_table(parser):
    """The flags of `parser` as the README's Markdown table: flag, default, meaning (its --help)."""
    rows = ["| flag | default | meaning |", "|---|---|---|"]
    for action in parser._actions:
        if not isinstance(action, argparse._HelpAction):
            rows.append(f"| {_flag_names(action)} | {_default(action)} | {action.help} |")
    return "\n".join(rows) + "\n"


def _flag_names(action):
    if not action.option_strings:
        return f"`{action.metavar or action.dest.upper()}`"
    value = "" if action.nargs == 0 else f" {{{','.join(action.choices)}}}" if action.choices else \
        f" {action.metavar or action.dest.upper()}"
    return ", ".join(f"`{name}`" for name in action.option_strings[:-1]) + \
        (", " if len(action.option_strings) > 1 else "") + f"`{action.option_strings[-1]}{value}`"


def _default(action):
    if action.nargs == 0:
        return "off"
    if getattr(action, "from_config", False):
        return "preset"
    if action.default in (None, []):
        return "—"
    shown = " ".join(map(str, action.default)) if isinstance(action.default, list) else action.default
    return f"`{shown}`"


def writable_folder(path, flag):
    """Create `path` if needed and check that files can be written there; returns it."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        raise ConfigError(f"cannot write to {path} ({error.strerror or error}); pass another {flag}") from None
    return path


def run(main, parser, argv=None):
    """Call `main(args)`; a JganError becomes one line on stderr and exit code 2."""
    args = parser.parse_args(argv)
    try:
        return main(args)
    except JganError as error:
        if args.debug:
            traceback.print_exc()
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt as interrupt:
        detail = f" ({interrupt})" if str(interrupt) else ""
        print(f"{parser.prog}: interrupted{detail}", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
