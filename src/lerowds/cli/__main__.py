"""``python -m lerowds.cli``."""

import sys

from lerowds.cli import main

sys.exit(main())
