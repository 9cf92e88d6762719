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
    spec = importlib.util.spec_from_file_location(
        "cli_reference", DOCS / "_ext" / "cli_reference.py"
    )
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


#: The order in which the documented examples run (each may use the files of earlier ones).
EXAMPLE_ORDER = ["warmup", "phantom", "import", "info", "export", "convert", "gaussian", "median", "unsharp", "slic",
                 "features", "register", "detect", "pipeline", "batch", "train", "demo"]  # fmt: skip


@pytest.mark.slow
def test_documented_examples_run(tmp_path, monkeypatch, capsys):
    """Every command's example runs as written, in a folder holding the files it names
    (a tiny phantom pair as ct.nii.gz, baseline.nii.gz and followup.nii.gz)."""
    import numpy as np

    import fastct
    from fastct.cli import main

    gen = _generator()
    examples = gen.examples()
    assert sorted(examples) == sorted(EXAMPLE_ORDER)
    monkeypatch.chdir(tmp_path)
    pair = fastct.datasets.phantom_pair("tiny", seed=1)
    for name, scan in (("baseline", pair.baseline), ("followup", pair.followup)):
        fastct.io.write_nifti(f"{name}.nii.gz", scan.image, spacing=scan.spacing,
                              origin=scan.origin)  # fmt: skip
    fastct.io.write_nifti("ct.nii.gz", pair.baseline.image.astype(np.int16),
                          spacing=pair.baseline.spacing)  # fmt: skip
    for name in EXAMPLE_ORDER:
        argv = shlex.split(examples[name])[1:]
        if name in ("train", "demo", "pipeline"):
            argv.append("--quiet")
        code = main(argv)
        assert code == 0, (examples[name], capsys.readouterr().err)
