"""``python -m synthbids``: the BIDS App (same as the ``synthbids`` command)."""

import sys

from .cli.run import main

if __name__ == '__main__':
    sys.exit(main())
