"""``python -m cosmonb info | run | train``: see :mod:`cosmonb.cli`."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
