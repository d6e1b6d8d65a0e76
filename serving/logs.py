"""JSON logs for Cloud Logging (`severity`, `message`), with the request id of the request being served."""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import json
import logging
import logging.config
import os
import tempfile
from typing import Any

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)

_SEVERITY = {"WARNING": "WARNING", "CRITICAL": "CRITICAL", "ERROR": "ERROR", "DEBUG": "DEBUG"}
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object a line: Cloud Logging reads `severity` and `message`; extras become fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "severity": _SEVERITY.get(record.levelname, "INFO"),
            "message": record.getMessage(),
            "logger": record.name,
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
        }
        request_id = request_id_var.get()
        if request_id is not None:
            entry["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def logging_config(level: str) -> dict[str, Any]:
    """A dictConfig routing our, uvicorn's and vLLM's loggers through JsonFormatter to stdout."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "serving.logs.JsonFormatter"}},
        "handlers": {"stdout": handler},
        "root": {"handlers": ["stdout"], "level": level},
        "loggers": {
            name: {"handlers": ["stdout"], "level": level, "propagate": False}
            for name in ("vllm", "uvicorn", "uvicorn.error", "serving")
        }
        # RequestContext writes the access log, with the request id and latency.
        | {"uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False}},
    }


def configure(level: str) -> None:
    """Configure this process, and point vLLM's engine processes (spawned later) at the same config."""
    config = logging_config(level)
    logging.config.dictConfig(config)
    # vLLM reads this file in every process it starts, so engine-core logs are JSON too.
    fd, path = tempfile.mkstemp(prefix="modeldrop-serving-logging-", suffix=".json")
    with os.fdopen(fd, "w") as file:
        json.dump(config, file)
    atexit.register(_remove, path)
    os.environ["VLLM_LOGGING_CONFIG_PATH"] = path
    os.environ.setdefault("VLLM_CONFIGURE_LOGGING", "1")


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
