"""``python -m heatdecode``."""

import sys

from heatdecode.cli import main

sys.exit(main())
