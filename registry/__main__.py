"""``python -m registry`` runs the same CLI as the ``registry`` console script."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
