"""``python -m lowlat ...`` is the ``lowlat`` command."""

import sys

from .cli import main

sys.exit(main())
