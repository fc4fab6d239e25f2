"""``python -m rnncap.cli`` runs the command line."""

import sys

from rnncap.cli import main

sys.exit(main())
