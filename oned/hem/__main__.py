"""``python -m oned.hem`` is ``oned-hem``."""

import sys

from oned.hem.cli import main

sys.exit(main())
