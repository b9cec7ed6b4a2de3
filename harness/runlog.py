"""A run's log file: what the policy engine, Ray and its workers print goes there; the terminal keeps gymbox's own
progress and results.

`start(path)` is called by a command (`gymbox eval`, `gymbox train`) before Ray starts: Ray's and vLLM's loggers
and Python warnings of this process go to the file, Ray forwards no worker output to the terminal, and every
actor started afterwards (they read `GYMBOX_LOG`) sends its whole stdout and stderr there, its engine processes
included (`redirect_process`). Library use and tests call none of it and keep Ray's usual behaviour.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

LOG_ENV = "GYMBOX_LOG"
# `ray.init` empties the `ray` logger's handlers (when it does not configure them itself) before it warns about
# token authentication from `ray._private`: that one needs its own handler.
LOGGERS = ("ray", "ray._private", "vllm", "py.warnings")


def start(path: Path) -> Path:
    """Begin the log at `path` (emptied) and route this process's chatter there; the absolute path."""
    path = path.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    os.environ[LOG_ENV] = str(path)
    logging.captureWarnings(True)
    route_loggers()
    return path


def route_loggers() -> None:
    """The loggers in `LOGGERS` write to the run's log alone. Called again around `ray.init`: importing Ray gives
    the `ray` logger a terminal handler of its own, and `ray.init` empties it."""
    path = active()
    if not path:
        return
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in LOGGERS:
        logger = logging.getLogger(name)
        for old in logger.handlers:
            if isinstance(old, logging.FileHandler) and old.baseFilename == path:
                old.close()
        logger.handlers = [handler]
        logger.propagate = False


def active() -> str | None:
    """The log file of this run, when a command started one."""
    return os.environ.get(LOG_ENV) or None


def redirect_process() -> None:
    """In a worker process (a Ray actor): its stdout and stderr, and its children's, appended to the run's log."""
    path = active()
    if not path:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
