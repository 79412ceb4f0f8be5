"""``python -m fastbp``: the same as the ``fastbp`` command."""
import sys

from .cli import main

sys.exit(main())
