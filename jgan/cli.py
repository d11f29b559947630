"""What the three command-line scripts share: one-sentence errors and exit codes."""
import argparse
import sys
import tempfile
import traceback
from pathlib import Path

from jgan.errors import ConfigError, JganError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a --debug flag and usage errors that exit with code 2 in one sentence."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(*args, **kwargs)
        self.add_argument("--debug", action="store_true",
                          help="show the full traceback when an error occurs")

    def error(self, message):
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see --help)\n")


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
