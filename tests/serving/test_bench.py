"""The benchmark's pure parts: usage parsing from a stream's tail, percentiles, and the ratio table."""

from __future__ import annotations

from serving.bench_load import Level, _usage_tokens, make_prompts, percentile
from serving.bench_report import TargetResult, report


def _level(concurrency: int, tokens_per_s: float, p50: float) -> Level:
    return Level(concurrency, 10, 0, 1.0, 100, tokens_per_s, 10.0, p50, p50, 0.01, 0.02)


def test_usage_is_read_from_the_last_event_before_done() -> None:
    """completion_tokens comes from the usage event, even when it is split from earlier chunks."""
    tail = (
        b'data: {"choices":[{"index":0,"text":"x"}]}\n\n'
        b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":128}}\n\n'
        b"data: [DONE]\n\n"
    )
    assert _usage_tokens(tail) == 128
    assert _usage_tokens(b"data: [DONE]\n\n") == 0


def test_percentiles_and_prompts_are_what_they_say() -> None:
    """p50/p99 pick from the sorted values; prompts have the asked length and distinct content."""
    import random

    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) in (50.0, 51.0)
    assert percentile(values, 0.99) == 99.0
    prompts = make_prompts(5, 16, 1000, random.Random(0))
    assert all(len(p) == 16 and all(10 <= t < 1000 for t in p) for p in prompts)
    assert len({tuple(p) for p in prompts}) == 5


def test_report_gives_ratios_to_vllm_at_the_same_concurrency() -> None:
    """The table divides each target's throughput by vLLM's at the same concurrency."""
    results = [
        TargetResult("container", 50.0, [_level(64, 980.0, 0.502)]),
        TargetResult("vllm", 100.0, [_level(64, 1000.0, 0.500)]),
    ]
    table = report(results)
    row = next(line for line in table.splitlines() if line.startswith("| container | 64"))
    assert "| 0.980 |" in row
    assert "+2.0" in row
    assert "container/vLLM 0.50×" in table


def test_server_args_reach_every_target_as_separate_flags() -> None:
    from serving.bench import _argv, parse_args

    args = parse_args(["--model", "/m", "--server-args", "--lora-target-modules q_proj v_proj"])
    for target in ("container", "vllm"):
        argv = _argv(target, args, 8000)
        assert argv[-3:] == ["--lora-target-modules", "q_proj", "v_proj"]


def test_interleaved_rounds_alternate_and_pool_ratios_per_concurrency() -> None:
    """ABBA order; each round's ratio is to vLLM in the same round, pooled as a geometric mean."""
    from serving.bench_interleave import InterleavedResult, order, summary, table

    assert order(["container", "vllm"], 0) == ["container", "vllm"]
    assert order(["container", "vllm"], 1) == ["vllm", "container"]
    result = InterleavedResult(["container", "vllm"], {"container": 40.0, "vllm": 50.0})
    for mine, theirs in ((990.0, 1000.0), (1100.0, 1000.0)):
        result.rounds.append(
            {
                "container": [_level(1, mine / 10, 0.321), _level(16, mine, 0.400)],
                "vllm": [_level(1, theirs / 10, 0.320), _level(16, theirs, 0.400)],
            }
        )
        result.api_cpu_ms.append({"container": [0.2, 0.1], "vllm": [0.3, 0.1]})
    rows = {row["concurrency"]: row for row in summary(result)}
    assert rows[1]["ratios"] == [0.99, 1.1]
    assert rows[16]["geomean"] == round((0.99 * 1.1) ** 0.5, 4)
    assert (rows[16]["min"], rows[16]["max"]) == (0.99, 1.1)
    assert rows[1]["p50_added_ms"] == 1.0
    assert (rows[1]["api_cpu_ms_per_token"], rows[1]["base_api_cpu_ms_per_token"]) == (0.2, 0.3)
    assert "| container | 16 | 1,045 | 1,000 | 0.990, 1.100 | **1.044** |" in table(result)
    assert "| +0.0 | 0.100 / 0.100 | 0 |" in table(result)


def test_the_api_process_cpu_is_read_per_process_and_per_token() -> None:
    """User + system seconds of one PID from /proc (a busy loop here adds to it), per output token."""
    import math
    import os
    import time

    from serving.bench_interleave import per_token_ms, process_cpu_s

    before = process_cpu_s(os.getpid())
    deadline = time.process_time() + 0.2
    while time.process_time() < deadline:
        pass
    assert process_cpu_s(os.getpid()) - before >= 0.1
    assert math.isnan(process_cpu_s(2**22 + 1))  # above Linux's PID limit: no such process
    assert per_token_ms(0.5, 1000) == 0.5 and math.isnan(per_token_ms(0.5, 0))


def test_interleave_is_refused_where_it_cannot_compare() -> None:
    import pytest

    from serving.bench import parse_args

    assert parse_args(["--model", "/m", "--targets", "container,vllm", "--interleave", "2"])
    for bad in (["--targets", "container"], ["--targets", "container,vllm,blocking"]):
        with pytest.raises(SystemExit):
            parse_args(["--model", "/m", "--interleave", "2", *bad])
    with pytest.raises(SystemExit):
        parse_args(
            ["--model", "/m", "--targets", "container,vllm", "--interleave", "2", "--adapters", "3"]
        )


def test_a_level_with_no_output_makes_the_pool_nan_not_a_crash() -> None:
    import math

    from serving.bench_interleave import InterleavedResult, summary, table

    result = InterleavedResult(["container", "vllm"], {"container": 1.0, "vllm": 1.0})
    result.rounds.append({"container": [_level(1, 0.0, 0.3)], "vllm": [_level(1, 100.0, 0.3)]})
    result.rounds.append({"container": [_level(1, 99.0, 0.3)], "vllm": [_level(1, 100.0, 0.3)]})
    (row,) = summary(result)
    assert math.isnan(row["geomean"]) and row["ratios"][1] == 0.99
    assert "**nan**" in table(result)
