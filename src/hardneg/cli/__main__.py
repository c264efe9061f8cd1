"""``python -m hardneg.cli``: the ``hardneg`` command."""

import sys

from hardneg.cli import main

sys.exit(main())
