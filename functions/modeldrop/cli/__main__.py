"""`python -m modeldrop.cli` runs the `modeldrop` command."""

from __future__ import annotations

import sys

from modeldrop.cli.app import main

if __name__ == "__main__":
    sys.exit(main())
