"""Run the reliability suite and write its figures as the table in docs/reliability.md.

python -m tests.reliability.report            # run the suite, then rewrite the table
python -m tests.reliability.report --figures F  # only rewrite the table from a figures file
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "reliability.md"
BEGIN, END = "<!-- figures:begin -->", "<!-- figures:end -->"
PYTEST = ".venv/bin/python -m pytest"
F = dict[str, Any]


def _crash(step: str) -> tuple[str, str, Callable[[F], str], str, Callable[[F], str], str]:
    return (
        f"crash-{step}",
        f"Crash {step.replace('-', ' ')}",
        lambda f: "1 deploy",
        f"on_command SIGKILLed {step.replace('-', ' ')}, restarted; Pub/Sub redelivers",
        lambda f: (
            f"{f['terminal_results']} terminal result, {f['deployments']} deployment, "
            f"converged in {f['ticks_to_converge']} tick(s), {f['leases_held']} lease held"
        ),
        f"{PYTEST} tests/reliability/test_crashes.py -k {step}",
    )


# (figures row, property, load, faults, outcome, command)
def _engine_killed(f: F) -> str:
    """Every in-flight request's answer, the statuses neither 200 nor 503 named."""
    other = f["in_flight"] - f["answered_503"] - f["answered_200"] - f["dropped"]
    named = "/".join(str(status) for status in f["answered_other"])
    return (
        f"{f['answered_503']} in-flight got 503, {f['answered_200']} got 200, "
        + (f"{other} got {named}, " if other else "")
        + f"{f['dropped']} dropped; health {f['health_after_kill']}; "
        f"emulator: {f['emulator_available_replicas']} available replicas"
    )


ROWS: list[tuple[str, str, Callable[[F], str], str, Callable[[F], str], str]] = [
    (
        "duplicates",
        "Duplicates and reordering",
        lambda f: (
            f"{f['uploads']} uploads ({f['notifications']} notifications), {f['commands']} deploys"
        ),
        "each notification delivered 2-3x, shuffled, 8 at once ({notification_deliveries}); each command published 2-3x ({command_deliveries})",
        lambda f: (
            f"{f['versions_registered']} versions, {f['upload_terminal_results']} upload results, "
            f"{f['deployments']} deployments on {f['endpoints']} endpoints, "
            f"{f['command_terminal_results']} command results; lost 0, duplicated "
            f"{f['upload_terminal_results'] - f['uploads'] + f['command_terminal_results'] - f['commands']}"
        ),
        f"{PYTEST} tests/reliability/test_duplicates.py",
    ),
    (
        "faults",
        "Vertex faults and GPU stockout",
        lambda f: (
            f"{f['uploads']} uploads, {f['commands']} commands (deploys, GPU deploys, undeploys)"
        ),
        "20% of Vertex calls fail (429/503/500 a third each), +150 ms per call, L4 stockout; Pub/Sub push redelivery",
        lambda f: (
            f"{f['terminal_results']} terminal results for {f['commands']} commands (lost {f['lost']}, "
            f"duplicated {f['duplicated']}), {f['failed_naming_stockout']} failed naming the stockout, "
            f"{f['versions_registered']} versions for {f['uploads']} uploads, "
            f"{f['function_errors_retried']} invocations retried, {f['dead_letters']} dead letters, "
            f"{f['operations_in_flight']} operations and {f['leases_held']} leases left"
        ),
        f"{PYTEST} tests/reliability/test_faults.py",
    ),
    (
        "stockout_fallback",
        "GPU stockout, placements in order",
        lambda f: (
            f"{f['commands']} deploys listing T4, L4, A100, each published twice ({f['published']})"
        ),
        "T4 and L4 stocked out (on the deploy operation, as Vertex reports a stockout)",
        lambda f: (
            f"{f['ready_on_third']} ready on the third placement, {f['refusals_named']} refusals named; "
            f"{f['terminal_results']} terminal results (lost {f['lost']}, duplicated {f['duplicated']}), "
            f"{f['ticks']} ticks, {f['operations_in_flight']} operations and {f['leases_held']} leases left"
        ),
        f"{PYTEST} tests/reliability/test_stockout_fallback.py",
    ),
    *(_crash(s) for s in ("after-lease", "after-intent", "after-deploy-started", "after-recorded")),
    (
        "race-conflicting-commands",
        "Conflicting commands on one endpoint",
        lambda f: "deploy v2 + undeploy, published at once",
        "none (a lease conflict retried by Pub/Sub)",
        lambda f: (
            f"{f['terminal_results']} terminal results (lost {f['lost']}, duplicated {f['duplicated']}), "
            f"{f['conflicts_retried']} conflicts retried, endpoint left serving {f['final_deployments'] or 'nothing'}"
        ),
        f"{PYTEST} tests/reliability/test_races.py -k conflicting",
    ),
    (
        "race-sweep-vs-burst",
        "Sweep racing a burst of traffic",
        lambda f: f"{f['predictions']} predictions from 8 senders; {f['ticks']} ticks",
        "every tick delivered twice at once; idle TTL 8 s passed before the burst",
        lambda f: (
            f"{f['answered']}/{f['predictions']} answered; serving deployment wrongly torn down "
            f"{f['hot_torn_down']}x; idle twin torn down {f['cold_torn_down']}x; "
            f"{f['ready_results']} ready results for 2 deploys"
        ),
        f"{PYTEST} tests/reliability/test_races.py -k burst",
    ),
    (
        "race-concurrent-duplicates",
        "Concurrent duplicates of one command",
        lambda f: f"{f['commands']} undeploys, 3 copies of each published at once",
        "none",
        lambda f: (
            f"{f['terminal_results']} terminal results ({', '.join(f['statuses'])}); "
            f"duplicated {f['duplicated']}"
        ),
        f"{PYTEST} tests/reliability/test_races.py -k duplicates",
    ),
    (
        "hostile",
        "Hostile input",
        lambda f: (
            f"{f['corpus']} cases: {f['commands']} commands, {f['uploads']} uploads, "
            f"{f['bad_paths']} object paths"
        ),
        "the corpus itself (tests/reliability/corpus.py)",
        lambda f: (
            f"{f['failed_results']} failed + {f['rejected_results']} rejected results, "
            f"{f['wrong_or_missing']} wrong or missing, {f['dead_letters']} dead letters, "
            f"{f['notifications_acked']}/{f['notifications']} notifications acked, "
            f"{f['created']} resources created"
        ),
        f"{PYTEST} tests/reliability/test_hostile.py -k corpus",
    ),
    (
        "hostile-concurrent-events",
        "Concurrent events of bad folders",
        lambda f: f"{f['folders']} bad folders, {f['events']} notifications handled at once",
        "none",
        lambda f: f"{f['rejected_results']} rejected results; duplicated {f['duplicated']}",
        f"{PYTEST} tests/reliability/test_hostile.py -k concurrent",
    ),
    (
        "serving-load",
        "Serving under load",
        lambda f: (
            f"{f['requests']} requests at concurrency {f['concurrency']}, {f['malformed']} malformed"
        ),
        "10 kinds of malformed body (broken JSON, wrong types, 70 KB, bad UTF-8, ...)",
        lambda f: (
            f"{f['good_answered']} good answered 200 (lost {f['good_lost']}), {f['bad_4xx']} bad got 4xx, "
            f"health {f['health_checks'] - f['health_not_200']}/{f['health_checks']} checks 200, "
            f"{f['elapsed_s']} s"
        ),
        f"{PYTEST} tests/reliability/test_serving_load.py -k malformed",
    ),
    (
        "serving-engine-killed",
        "Engine killed under load",
        lambda f: f"{f['in_flight']} requests in flight (256 tokens each)",
        "SIGKILL to the EngineCore process",
        _engine_killed,
        f"{PYTEST} tests/reliability/test_serving_load.py -k killed",
    ),
]


def table(figures: dict[str, F]) -> str:
    lines = [
        "| property | load or corpus | faults injected | outcome (measured) | reproduce |",
        "| --- | --- | --- | --- | --- |",
    ]
    for key, name, load, faults, outcome, command in ROWS:
        found = figures.get(key)
        if found is None:
            lines.append(f"| {name} | not run | | | `{command}` |")
            continue
        lines.append(
            f"| {name} | {load(found)} | {faults.format(**found)} | {outcome(found)} | `{command}` |"
        )
    return "\n".join(lines)


def rewrite(figures: dict[str, F], doc: Path = DOC) -> None:
    text = doc.read_text()
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    doc.write_text(f"{head}{BEGIN}\n{table(figures)}\n{END}{tail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.report", description=__doc__)
    parser.add_argument("--figures", type=Path, help="a figures file from an earlier run")
    args = parser.parse_args(argv)
    path = args.figures
    code = 0
    if path is None:
        path = Path(tempfile.mkdtemp(prefix="reliability-")) / "figures.json"
        env = {**os.environ, "RELIABILITY_FIGURES": str(path)}
        command = [
            sys.executable,
            "-m",
            "pytest",
            "tests/reliability",
            "-q",
            "-p",
            "no:cacheprovider",
        ]
        code = subprocess.run(command, cwd=REPO, env=env, check=False).returncode
    rewrite(json.loads(path.read_text()))
    print(f"figures from {path} written to {DOC.relative_to(REPO)}")
    return code


if __name__ == "__main__":
    sys.exit(main())
