"""``python -m engine`` runs the ``keyturn`` command line."""

import sys

from engine.cli.main import main

sys.exit(main())
