"""``python -m fastct``: the ``fastct`` command line."""

import sys

from fastct.cli import main

if __name__ == "__main__":  # pragma: no cover - run as a process in tests
    sys.exit(main())
