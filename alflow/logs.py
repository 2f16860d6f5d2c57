"""Logging for scripts run by Snakemake: everything goes to the rule's log file."""
from __future__ import annotations

import logging
import sys


def to_file(path: str) -> logging.Logger:
    """Send logging, warnings and stray stderr output of this process to ``path``.

    Third-party libraries log at WARNING and above (cp2k-input-tools' tokenizer
    is very chatty at INFO); this package's own progress messages at INFO.
    """
    stream = open(path, "a", buffering=1)
    sys.stderr = stream
    logging.basicConfig(stream=stream, level=logging.WARNING, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.captureWarnings(True)
    logger = logging.getLogger("alflow")
    logger.setLevel(logging.INFO)
    return logger


def to_terminal(message: str) -> None:
    """Also show ``message`` in Snakemake's own output (the job's real stderr),
    for what a user must see without opening the log: :func:`to_file` sends
    everything else to the rule's log."""
    print(message, file=sys.__stderr__, flush=True)
