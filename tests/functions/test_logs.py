"""The functions log one JSON object a line, as Cloud Logging reads structured entries."""

from __future__ import annotations

import json
import logging
import sys

from modeldrop.logs import JsonFormatter


def test_a_line_carries_severity_message_and_extras() -> None:
    """severity and message are Cloud Logging's keys; extra= fields ride along as fields."""
    record = logging.LogRecord("modeldrop", logging.WARNING, __file__, 1, "busy %s", ("e1",), None)
    record.request_id = "req-1"
    entry = json.loads(JsonFormatter().format(record))
    assert entry == {
        "severity": "WARNING",
        "message": "busy e1",
        "logger": "modeldrop",
        "request_id": "req-1",
    }


def test_an_exception_is_kept_with_its_traceback() -> None:
    """A logged exception keeps its traceback in one field of the same line."""
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "modeldrop",
            logging.ERROR,
            __file__,
            1,
            "failed",
            (),
            exc_info=sys.exc_info(),
        )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    assert "ValueError: boom" in json.loads(line)["exception"]
