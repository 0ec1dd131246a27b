"""``python -m edgegw`` runs the same command line as the ``edgegw`` executable."""

import sys

from edgegw.cli import main

sys.exit(main())
