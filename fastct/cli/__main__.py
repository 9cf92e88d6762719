"""``python -m fastct.cli`` (also ``python -m fastct``): the ``fastct`` command."""

from . import run

if __name__ == "__main__":  # pragma: no cover
    run()
