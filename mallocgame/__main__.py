"""``python -m mallocgame``: the ``mallocgame`` command."""

import sys

from mallocgame.cli import main

sys.exit(main())
