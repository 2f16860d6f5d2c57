"""Logging for scripts run by Snakemake: everything goes to the rule's log file."""
from __future__ import annotations

import logging
import sys


def to_file(path: str) -> logging.Logger:
    """Send logging, warnings and stray stderr output of this process to ``path``."""
    stream = open(path, "a", buffering=1)
    sys.stderr = stream
    logging.basicConfig(stream=stream, level=logging.INFO, force=True,
                        format="%(asctime)s %(levelname)s %(message)s")
    logging.captureWarnings(True)
    return logging.getLogger("alflow")
