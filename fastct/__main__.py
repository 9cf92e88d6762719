"""``python -m fastct``: the ``fastct`` command line."""

from fastct.cli import run

if __name__ == "__main__":  # pragma: no cover - run as a process in tests
    run()
