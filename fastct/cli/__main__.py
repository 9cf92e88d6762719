"""``python -m fastct.cli`` (also ``python -m fastct``): the ``fastct`` command."""

import sys

from . import main

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
