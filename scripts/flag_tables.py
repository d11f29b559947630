"""Write the README's flag tables from the scripts' own parsers (jgan.cli.flag_table), whose types,
ranges and meanings come from jgan.schema, so that the tables and --help cannot drift apart.
tests/test_cli.py fails while a table is out of date.

    python scripts/flag_tables.py
"""
import importlib.util
import re
from pathlib import Path

from jgan.cli import flag_table

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
TABLE = re.compile(r"(<!-- flags of (\w+)\.py: written by scripts/flag_tables.py -->\n)(.*?)(<!-- end of flags -->)", re.S)


def build_parser(script):
    """The argument parser of a top-level script (prepare_data, train, generate)."""
    spec = importlib.util.spec_from_file_location(f"{script}_script", REPO / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_parser()


def with_tables(text):
    """`text` with each marked table replaced by its script's flags."""
    return TABLE.sub(lambda match: match.group(1) + flag_table(build_parser(match.group(2))) + match.group(4), text)


if __name__ == "__main__":
    README.write_text(with_tables(README.read_text()))
    print(f"wrote the flag tables of {README}")
