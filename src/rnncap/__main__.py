"""``python -m rnncap`` runs the command line, as ``rnncap`` does; so does ``torchrun -m rnncap prepare ...``,
one process per shard (see :mod:`rnncap.apps.prepare_shards`)."""

import sys

from rnncap.cli import main

sys.exit(main())
