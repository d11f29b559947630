"""What the scripts share (jgan.cli): flags whose type, range and meaning come from jgan.schema,
and the README's flag tables, written from the same parsers."""
import argparse
import importlib.util
from pathlib import Path

import pytest

from jgan import schema
from jgan.cli import ArgumentParser, config_flag, flag_table

REPO = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("flag_tables", REPO / "scripts" / "flag_tables.py")
flag_tables = importlib.util.module_from_spec(spec)
spec.loader.exec_module(flag_tables)


@pytest.mark.parametrize("script", ["prepare_data", "train", "generate"])
def test_the_readme_flag_table_is_the_scripts_own(script):
    readme = (REPO / "README.md").read_text()
    marker = f"<!-- flags of {script}.py: written by scripts/flag_tables.py -->\n"
    assert marker in readme
    table = flag_table(flag_tables.build_parser(script))
    assert marker + table + "<!-- end of flags -->" in readme, \
        f"README's {script}.py table is out of date: run python scripts/flag_tables.py"


def test_a_config_flag_takes_range_and_meaning_from_the_schema_and_refuses_values_outside(capsys):
    parser = ArgumentParser(prog="t")
    config_flag(parser, "--ema", schema.flag_field("train.ema"))
    assert parser.parse_args(["--ema", "0.5"]).ema == 0.5
    assert "EMA decay of the sample generator (0 = off); a number in [0, 1)" in parser.format_help()
    for value in ("1.5", "-1", "nan", "abc"):
        with pytest.raises(SystemExit) as exit_:
            parser.parse_args(["--ema", value])
        assert exit_.value.code == 2
        assert f"argument --ema: must be a number in [0, 1), got '{value}' (see --help)" in capsys.readouterr().err


def test_every_train_flag_of_a_config_key_says_the_keys_range_in_its_help():
    spec = importlib.util.spec_from_file_location("train_script", REPO / "train.py")
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    helps = {action.option_strings[0]: action.help for action in train.build_parser()._actions if action.option_strings}
    flags = {**train.CONFIG_FLAGS, **train.PROGRESSIVE_FLAGS, **train.STYLED_FLAGS}
    for flag, keys in flags.items():
        field = schema.flag_field(keys[0])
        assert helps[flag].endswith(f"; {schema.allowed_values(field)}"), (flag, helps[flag])
    assert helps["--seed"] == "random seed of the weights, the data order and every draw; an integer from 0 to 2147483647"


def test_null_sets_an_optional_key_to_none():
    parser = argparse.ArgumentParser()
    config_flag(parser, "--batch", schema.flag_field("train.batch"))
    assert parser.parse_args(["--batch", "null"]).batch is None
    assert parser.parse_args(["--batch", "8"]).batch == 8
