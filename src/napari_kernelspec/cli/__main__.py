"""``python -m napari_kernelspec.cli``."""

import sys

from . import main

sys.exit(main())
