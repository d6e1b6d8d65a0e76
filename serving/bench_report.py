"""The benchmark's report: a markdown table with ratios to plain vLLM, and a throughput plot.

Also joins the JSON files of separate `serving.bench --out` runs (one target each, say, on one machine
one after the other) into one report:
  python -m serving.bench_report container.json vllm.json [--plot PNG] [--title TEXT]
Ratios are to the last vLLM result given, so report one run at a time; a plot may show several
(FILE=RUN labels each line with its run).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from serving.bench_load import Level


@dataclass
class TargetResult:
    name: str
    ready_s: float
    levels: list[Level] = field(default_factory=list)
    run: str = ""  # which run it came from, when a plot shows several


def report(results: list[TargetResult]) -> str:
    """A markdown table, with each target's ratios to plain vLLM at the same concurrency."""
    base = {r.name: r for r in results}.get("vllm")
    base_levels = {lv.concurrency: lv for lv in base.levels} if base else {}
    lines = [
        "| target | concurrency | req/s | tok/s | × vLLM tok/s | p50 latency (s) | p99 latency (s) "
        "| p50 − vLLM p50 (ms) | TTFT p50 (s) | TTFT p99 (s) | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        for lv in result.levels:
            ref = base_levels.get(lv.concurrency)
            ratio = f"{lv.tokens_per_s / ref.tokens_per_s:.3f}" if ref else "—"
            added = f"{(lv.latency_p50_s - ref.latency_p50_s) * 1000:+.1f}" if ref else "—"
            lines.append(
                f"| {result.name} | {lv.concurrency} | {lv.requests_per_s:.2f} | "
                f"{lv.tokens_per_s:,.0f} | {ratio} | {lv.latency_p50_s:.3f} | {lv.latency_p99_s:.3f} | "
                f"{added} | {lv.ttft_p50_s:.3f} | {lv.ttft_p99_s:.3f} | {lv.errors} |"
            )
    lines.append("")
    ready = ", ".join(f"{r.name} {r.ready_s:.1f} s" for r in results)
    lines.append(
        f"Time to ready (start → health 200): {ready}"
        + (f"; container/vLLM {base_ready_ratio(results):.2f}×" if base else "")
    )
    return "\n".join(lines)


def base_ready_ratio(results: list[TargetResult]) -> float:
    by_name = {r.name: r for r in results}
    return (
        by_name["container"].ready_s / by_name["vllm"].ready_s
        if {"container", "vllm"} <= set(by_name)
        else float("nan")
    )


def plot(results: list[TargetResult], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    # One colour per target, one line style per run.
    colours = {name: f"C{i}" for i, name in enumerate(dict.fromkeys(r.name for r in results))}
    runs = {run: i for i, run in enumerate(dict.fromkeys(r.run for r in results))}
    styles = ["-", "--", ":", "-."]
    for result in results:
        xs = [lv.concurrency for lv in result.levels]
        label = f"{result.name} ({result.run})" if result.run else result.name
        axis.plot(
            xs,
            [lv.tokens_per_s for lv in result.levels],
            marker="o",
            label=label,
            color=colours[result.name],
            linestyle=styles[runs[result.run] % len(styles)],
        )
    axis.set_xscale("log", base=2)
    axis.set_xlabel("concurrent requests")
    axis.set_ylabel("output tokens / s")
    axis.set_title(title)
    axis.grid(True, alpha=0.3)
    axis.legend(loc="lower right", fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def load(paths: Sequence[str]) -> list[TargetResult]:
    """The targets of `serving.bench --out` files, in the order given; `FILE=RUN` names the run."""
    results: list[TargetResult] = []
    for spec in paths:
        path, _, run = spec.partition("=")
        for raw in json.loads(Path(path).read_text())["results"]:
            levels = [Level(**level) for level in raw["levels"]]
            results.append(TargetResult(raw["name"], float(raw["ready_s"]), levels, run))
    return results


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m serving.bench_report", description=__doc__)
    parser.add_argument(
        "files", nargs="+", help="JSON files of serving.bench --out (FILE=RUN labels the plot)"
    )
    parser.add_argument("--plot", type=Path, help="write a PNG of throughput vs concurrency here")
    parser.add_argument("--title", default="serving throughput")
    args = parser.parse_args(argv)
    results = load(args.files)
    print(report(results))
    if args.plot:
        plot(results, args.plot, args.title)


if __name__ == "__main__":
    main()
