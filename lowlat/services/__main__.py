"""``python -m lowlat.services <demo|serve|loadgen|bench|durable> ...``: the ``lowlat`` CLI's service commands."""

from __future__ import annotations

import sys

from ..cli import main

if __name__ == "__main__":
    sys.exit(main())
