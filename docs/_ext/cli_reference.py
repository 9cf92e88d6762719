"""Generate the command reference of ``docs/cli.rst`` from :func:`fastct.cli.build_parser`.

Every sub-command gets a section: its description, its example (the ``example=`` given
where the command is defined, also shown at the end of its ``--help``) and its full
help text (the ``fastct-cli-help`` directive of :mod:`fastct_docs`, rendered at build
time). The section is written between the ``BEGIN``/``END`` marker comments of
``docs/cli.rst``; ``make docs`` runs ``python docs/_ext/cli_reference.py`` first and
``tests/test_cli_docs.py`` fails when the committed page is stale.

Usage::

    python docs/_ext/cli_reference.py           # rewrite docs/cli.rst
    python docs/_ext/cli_reference.py --check   # exit 1 if docs/cli.rst is stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

CLI_RST = Path(__file__).resolve().parent.parent / "cli.rst"
BEGIN = ".. BEGIN GENERATED COMMAND REFERENCE (python docs/_ext/cli_reference.py)"
END = ".. END GENERATED COMMAND REFERENCE"


def commands() -> dict[str, argparse.ArgumentParser]:
    """Every sub-command's parser, in ``fastct --help`` order."""
    from fastct.cli import build_parser

    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}  # pragma: no cover


def examples() -> dict[str, str]:
    """The example command line of every sub-command (without the ``$ ``)."""
    return {name: getattr(p, "example", None) or "" for name, p in commands().items()}


def render() -> str:
    """The generated part of docs/cli.rst, markers included."""
    lines = [BEGIN, ""]
    for name, p in commands().items():
        title = f"``fastct {name}``"
        lines += [title, "~" * len(title), ""]
        if p.description:
            lines += [p.description, ""]
        example = getattr(p, "example", None)
        if example:
            lines += [".. code-block:: console", "", f"   $ {example}", ""]
        lines += [f".. fastct-cli-help:: {name}", ""]
    lines.append(END)
    return "\n".join(lines) + "\n"


def updated(text: str) -> str:
    """``text`` (docs/cli.rst) with its generated part replaced by :func:`render`."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{CLI_RST}: the markers {BEGIN!r} and {END!r} are missing")
    return text[:start] + render() + text[end + len(END) + 1 :]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if docs/cli.rst is stale")
    args = ap.parse_args(argv)
    text = CLI_RST.read_text(encoding="utf-8")
    new = updated(text)
    if args.check:
        if new != text:
            print(f"{CLI_RST} is stale: run python docs/_ext/cli_reference.py", file=sys.stderr)
            return 1
        return 0
    if new != text:
        CLI_RST.write_text(new, encoding="utf-8")
        print(f"rewrote {CLI_RST}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
