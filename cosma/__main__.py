"""``python -m cosma``: the ``cosma`` command."""

import sys

from cosma.cli.main import main

sys.exit(main())
