"""Startup phases: timed from the process start, logged one JSON line each, summed up at ready."""

from __future__ import annotations

import logging
import time

import pytest

from serving.startup import Phases, process_started_monotonic


def test_the_process_start_is_before_now_and_after_boot() -> None:
    started = process_started_monotonic()
    assert 0 <= time.monotonic() - started < 3600
    assert process_started_monotonic("/nonexistent") == pytest.approx(time.monotonic(), abs=1)


def test_phases_are_logged_and_summed_up_in_start_order(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    phases = Phases(origin=90.0, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="serving"):
        run = phases.timed("weights", lambda: now.__setitem__(0, 102.5) or "folder")
        assert run() == "folder"
        phases.record("settings", 91.0, 99.0)
    assert [(r.getMessage(), r.__dict__["phase"]) for r in caplog.records] == [
        ("startup phase", "weights"),
        ("startup phase", "settings"),
    ]
    summary = phases.summary()
    assert list(summary["phases"]) == ["settings", "weights"]
    assert summary["phases"]["weights"] == {"start_s": 10.0, "end_s": 12.5, "duration_s": 2.5}
    assert summary["since_process_start_s"] == 12.5
