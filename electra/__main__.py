"""``python -m electra`` (and ``torchrun -m electra``) runs the CLI."""

import sys

from electra.cli import main

sys.exit(main())
