"""Log lines are JSON objects Cloud Logging reads: severity, message, and the request id when serving one."""

from __future__ import annotations

import json
import logging

from serving.logs import JsonFormatter, logging_config, request_id_var


def _record(level: int, message: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("serving", level, __file__, 1, message, None, None)
    record.__dict__.update(extra)
    return record


def test_a_line_has_severity_message_and_extras() -> None:
    """WARNING stays WARNING, the message is formatted, and extra fields are kept."""
    line = json.loads(JsonFormatter().format(_record(logging.WARNING, "slow", latency_s=2.5)))
    assert line["severity"] == "WARNING"
    assert line["message"] == "slow"
    assert line["latency_s"] == 2.5
    assert "request_id" not in line


def test_the_request_id_of_the_current_request_is_on_the_line() -> None:
    """Inside a request, every line carries its id."""
    token = request_id_var.set("abc")
    try:
        line = json.loads(JsonFormatter().format(_record(logging.INFO, "hi")))
    finally:
        request_id_var.reset(token)
    assert line["request_id"] == "abc"
    assert line["severity"] == "INFO"


def test_vllm_and_uvicorn_logs_go_through_the_json_formatter() -> None:
    """The logging config routes vLLM's and uvicorn's loggers to the JSON handler at the chosen level."""
    config = logging_config("DEBUG")
    assert config["loggers"]["vllm"]["handlers"] == ["stdout"]
    assert config["loggers"]["uvicorn.error"]["level"] == "DEBUG"
    assert config["formatters"]["json"]["()"] == "serving.logs.JsonFormatter"
