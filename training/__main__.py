"""`python -m training` entry point (see training/README.md)."""

import sys

from .train import main

sys.exit(main())
