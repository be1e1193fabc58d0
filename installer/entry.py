"""The frozen executable's entry point: the ``possync`` command line, nothing else."""

from __future__ import annotations

import multiprocessing
import sys

from agent.cli import main

if __name__ == "__main__":
    multiprocessing.freeze_support()
    sys.exit(main())
