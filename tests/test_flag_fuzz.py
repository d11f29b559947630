"""Fuzz: random values, in range and out of it, of every flag of train.py and generate.py.

Each drawn flag set goes through what the scripts run before they touch a file: their argument
parser, then train.py's choice of arch, flag checks and configuration (generate.py's mixing range).
It must either pass, or be refused with one sentence: argparse's exit code 2, or a jgan error,
which the scripts print as one line with exit code 2. No other exception, and no file changed.
"""
import argparse
import contextlib
import importlib.util
import io
import random
from collections import Counter
from pathlib import Path

import pytest

from jgan import registry
from jgan.config import schema_of
from jgan.errors import JganError

REPO = Path(__file__).resolve().parent.parent
DRAWS = 240
GOOD_NUMBERS = ["0.5", "1", "2", "4", "8", "16", "32"]
NUMBERS = GOOD_NUMBERS + ["-5", "-1", "-0.1", "0", "0.999", "1.5", "3", "48", "64", "1024", "2048", "2147483647",
                          "2147483648", "1e3", "nan", "inf", "abc", "", "null"]
VALUES = ["0", "1", "-1", "0.5", "1.5", "64", "48", "true", "none", "''", "[2, 3]", "[0.5, 0.9]", "{8: 4}",
          "{7: 4}", "[16, 16, 16]", "[]", "bce", "r1", "adam", "resize", "batch", "x: [", "null"]


def load_script(name):
    spec = importlib.util.spec_from_file_location(f"{name}_script", REPO / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TRAIN, GENERATE = load_script("train"), load_script("generate")


def config_keys():
    """Every `section.key` of every architecture's schema (and a misspelt one)."""
    keys = {"train.n_critc", "model.width"}
    for arch in registry.names():
        for section, field in schema_of(arch).model_fields.items():
            for cls in [field.annotation] + list(getattr(field.annotation, "__args__", ())):
                keys.update(f"{section}.{name}" for name in getattr(cls, "model_fields", {}))
    return sorted(keys)


def draw_value(action, rng, files):
    """A value for one flag: a choice, a number, or text, in range or not."""
    if action.choices:
        return rng.choice([*action.choices, "bogus"])
    if action.dest == "config":
        return rng.choice(files["configs"])
    if action.dest == "set":
        return f"{rng.choice(files['keys'])}={rng.choice(VALUES)}"
    if action.dest == "arch":
        return rng.choice([*registry.names(), "biggan"])
    if action.dest == "mixing_range":
        return rng.choice(["coarse", "middle", "fine", "0,1", "2,1", "-1,3", "a,b", "1"])
    if action.dest == "metrics":
        return rng.choice(["swd", "", "swd,fid"])
    if action.type is not None:
        return rng.choice(GOOD_NUMBERS if rng.random() < 0.5 else NUMBERS)
    return rng.choice(["run", "out", "checkpoint"])


def draw_argv(parser, rng, files, positional):
    """A few flags (from one to about a third of them), each with a drawn value."""
    argv, share = list(positional), rng.choice([0.05, 0.1, 0.2, 0.35])
    for action in parser._actions:
        if not action.option_strings or action.dest in ("help", "debug", "resume") or rng.random() > share:
            continue
        argv.append(rng.choice(action.option_strings))
        if action.nargs != 0:
            argv.append(draw_value(action, rng, files))
    return argv


def parse(parser, argv):
    """(args, None), or (None, stderr) when argparse refuses the flags."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        try:
            return parser.parse_args(argv), None
        except SystemExit as exit_:
            assert exit_.code == 2, (argv, stderr.getvalue())
    return None, stderr.getvalue()


def check_train(args):
    args.arch = TRAIN.chosen_arch(args)
    TRAIN.check_flags_apply(args)
    TRAIN.new_config(args, has_cuda=False)


def check_generate(args):
    from jgan.generation import parse_mixing_range
    parse_mixing_range(args.mixing_range)


def outcome(parser, argv, check):
    """'accepted', 'refused by argparse' or 'refused by jgan', after checking the message is one sentence."""
    args, refusal = parse(parser, argv)
    if args is None:
        lines = [line for line in refusal.splitlines() if not line.startswith("usage:") and line.strip()]
        assert len(lines) == 1 and lines[0].endswith("(see --help)"), (argv, refusal)
        return "refused by argparse"
    try:
        check(args)
    except JganError as error:
        assert "\n" not in str(error) and str(error).strip(), (argv, str(error))
        return "refused by jgan"
    return "accepted"


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "broken.yaml").write_text("train: [unclosed\n")
    (tmp_path / "list.yaml").write_text("- 1\n")
    (tmp_path / "small.yaml").write_text("arch: dcgan\ntrain:\n  batch: 4\n")
    presets = [str(path) for path in sorted(registry.CONFIG_DIR.glob("*.yaml"))]
    return {"configs": presets + ["broken.yaml", "list.yaml", "small.yaml", "missing.yaml"], "keys": config_keys()}


def snapshot(*folders):
    return {path: path.stat().st_mtime_ns for folder in folders for path in Path(folder).rglob("*") if path.is_file()}


@pytest.mark.parametrize("script", ["train", "generate"])
def test_every_drawn_flag_set_passes_or_is_refused_in_one_sentence(script, files, tiny_lmdb, tmp_path):
    module, check = (TRAIN, check_train) if script == "train" else (GENERATE, check_generate)
    parser = module.build_parser()
    positional = [str(tiny_lmdb)] if script == "train" else []
    rng = random.Random(17)
    before = snapshot(tiny_lmdb, tmp_path, registry.CONFIG_DIR)
    counts = Counter(outcome(parser, draw_argv(parser, rng, files, positional), check) for _ in range(DRAWS))
    print(f"\n{script}.py: {DRAWS} flag sets: {dict(counts)}")
    assert snapshot(tiny_lmdb, tmp_path, registry.CONFIG_DIR) == before
    assert set(counts) == {"accepted", "refused by argparse", "refused by jgan"}, counts


def test_every_flag_is_drawn():
    """The fuzz reaches every flag: none is left out by its kind."""
    for module in (TRAIN, GENERATE):
        flags = [a for a in module.build_parser()._actions if a.option_strings]
        assert all(isinstance(a, (argparse._StoreAction, argparse._StoreTrueAction, argparse._AppendAction,
                                  argparse._HelpAction)) for a in flags)
