"""JSON log lines for Cloud Logging: `severity`, `message`, and the fields a line is about."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object a line; extras passed with `extra={...}` (request_id, event_id) become fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            # Cloud Logging's severities match Python's level names but for WARN/FATAL spellings.
            "severity": record.levelname if record.levelname != "NOTSET" else "DEFAULT",
            "message": record.getMessage(),
            "logger": record.name,
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(level: int = logging.INFO) -> None:
    """Route the root logger through JsonFormatter to stdout, once per process."""
    root = logging.getLogger()
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root.handlers = [handler]
    root.setLevel(level)
