"""The startup benchmark's pure parts: phases and vLLM's engine lines read from both servers' logs, medians and ratios."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from serving.bench_startup import breakdown, summarize


def test_the_container_log_gives_its_phases_and_vllm_markers(tmp_path: Path) -> None:
    """JSON lines (the container) and vLLM's text lines both give seconds since the start."""
    started = datetime(2026, 12, 7, 5, 0, 0).timestamp()
    phases = {"weights": {"start_s": 7.0, "end_s": 9.0, "duration_s": 2.0}}
    lines = [
        json.dumps({"message": "startup phases", "time": "", "phases": phases}),
        json.dumps(
            {
                "message": "Initializing a V1 LLM engine (v0.32.0) with config: ...",
                "time": "2026-12-07T05:00:08.500Z",
            }
        ),
        "(EngineCore pid=1) INFO 12-07 05:00:10.250 [default_loader.py:1] Loading weights took 2.40 seconds",
        "INFO 12-07 05:00:30 [core.py:1] init engine (profile, create kv cache, warmup model) took 19.5 s",
        "Triton is installed, but doesn't include CPU backend.",
    ]
    log = tmp_path / "run.log"
    log.write_text("\n".join(lines).replace('"time": ""', '"time": "2026-12-07T05:00:20Z"'))
    result = breakdown(log, started)
    assert result["phases"] == phases
    assert result["markers"]["engine_process_up"] == 8.5
    assert result["markers"]["engine_ready"] == 30.0
    assert result["took"] == {"weights_load_s": 2.4, "init_engine_s": 19.5}


def test_the_summary_gives_medians_and_the_issues_ratios() -> None:
    runs = [
        {"condition": c, "ready_s": s}
        for c, s in [("cold", 60), ("cold", 70), ("cold", 65), ("restored", 30), ("vllm", 100)]
    ]
    summary = summarize(runs)
    assert summary["median_ready_s"] == {"cold": 65, "restored": 30, "vllm": 100}
    assert summary["restored/vllm"] == 0.3
    assert summary["cold/vllm"] == 0.65
    assert summary["restored/cold"] == round(30 / 65, 3)
