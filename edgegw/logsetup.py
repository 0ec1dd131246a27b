"""Log lines that read well on a terminal and in journald.

Under systemd (``$JOURNAL_STREAM`` set) journald stamps every line itself, so
text lines carry no timestamp there and start with a ``<N>`` syslog priority
prefix, which journald turns into the entry's priority. JSON lines carry
everything, for log shippers.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

_PRIORITY = {"DEBUG": 7, "INFO": 6, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}
_style = ["text"]


def json_entry(created: float, level: str, logger: str, message: str) -> dict[str, Any]:
    """The fields every JSON line starts with (the access log's too)."""
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
        + f".{int((created % 1) * 1000):03d}Z",
        "level": level.lower(),
        "logger": logger,
        "msg": message,
    }


class JSONFormatter(logging.Formatter):
    """One JSON object per line; extra fields given as ``extra={"fields": {...}}``."""

    def format(self, record: logging.LogRecord) -> str:
        entry = json_entry(record.created, record.levelname, record.name, record.getMessage())
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, separators=(",", ":"))


class JournalFormatter(logging.Formatter):
    """``<priority>logger: message``, for journald."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return f"<{_PRIORITY.get(record.levelname, 6)}>{text}"


def setup_logging(log_format: str = "text", level: str = "info") -> None:
    """Configure the root logger once, for the whole process."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JSONFormatter())
        _style[0] = "json"
    elif os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
        _style[0] = "journal"
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        _style[0] = "text"
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    quiet_libraries()


def quiet_libraries() -> None:
    """httpx logs every request at INFO: under ``--cluster`` that is three etcd calls a second."""
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)


def current_style() -> str:
    """The line shape ``setup_logging`` chose: ``text``, ``journal`` or ``json``.

    The access log formats its own lines (see ``accesslog``) and must match.
    """
    return _style[0]
