"""``--workers N``: N gateway processes sharing every listener with SO_REUSEPORT.

Python runs one thread of bytecode per process, so using more cores means
more processes. Each worker is a complete gateway (it loads and watches the
config itself, so no config crosses process boundaries); the kernel spreads
new connections across them. Worker 0 alone serves the admin API and writes
the state directory, so there is one status and one allocation record. The
supervisor forwards SIGTERM/SIGINT/SIGHUP and exits when every worker has.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys

log = logging.getLogger("edgegw")

WORKER_ENV = "EDGEGW_WORKER_INDEX"


def worker_index() -> int | None:
    """This process's worker index, or None for a single-process gateway."""
    value = os.environ.get(WORKER_ENV)
    return int(value) if value is not None else None


def run_workers(count: int) -> int:
    """Start ``count`` workers, forward signals, return 0 when all exited 0."""
    argv = [sys.executable, "-m", "edgegw", *sys.argv[1:]]
    children = [
        subprocess.Popen(argv, env={**os.environ, WORKER_ENV: str(i)}) for i in range(count)
    ]

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    codes = [child.wait() for child in children]
    log.info("workers exited with %s", codes)
    return 0 if all(code == 0 for code in codes) else 1
