"""`python -m warren.admin ...`: the same as the `warren` command."""

import sys

from warren.admin.cli import main

if __name__ == "__main__":
    sys.exit(main())
