"""``python -m lowlat ...`` is the ``lowlat`` console script."""

import sys

from lowlat.cli import main

sys.exit(main())
