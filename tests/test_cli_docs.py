"""docs/cli.rst documents every command, with an example that parses and a reference
generated from the parser (``python docs/_ext/cli_reference.py``)."""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path

import pytest

from fastct.cli import build_parser

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _generator():
    spec = importlib.util.spec_from_file_location("cli_reference", DOCS / "_ext" / "cli_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_rst_is_generated_from_the_parser():
    gen = _generator()
    text = (DOCS / "cli.rst").read_text(encoding="utf-8")
    assert gen.updated(text) == text, "docs/cli.rst is stale: run python docs/_ext/cli_reference.py"
    assert "not implemented" not in text


def test_every_command_is_documented_with_an_example():
    gen = _generator()
    text = (DOCS / "cli.rst").read_text(encoding="utf-8")
    examples = gen.examples()
    assert len(examples) >= 14
    for name, example in examples.items():
        assert f"``fastct {name}``" in text, name
        assert f".. fastct-cli-help:: {name}" in text, name
        assert example.startswith(f"fastct {name} "), (name, example)
        assert f"$ {example}" in text, name


def _console_lines(text: str) -> list[str]:
    return [m.group(1) for m in re.finditer(r"^\s+\$ (fastct .*)$", text, re.MULTILINE)]


@pytest.mark.parametrize("line", _console_lines((DOCS / "cli.rst").read_text(encoding="utf-8")))
def test_documented_command_lines_parse(line):
    args = build_parser().parse_args(shlex.split(line)[1:])
    assert callable(args.func)
