"""The control plane's snapshot of the container's flags matches the installed vLLM, and reads words as vLLM does."""

from __future__ import annotations

import json

import pytest

from modeldrop import serving_flags
from serving import flags, flags_snapshot


def test_the_snapshot_matches_the_installed_vllm() -> None:
    """functions/modeldrop/serving_flags.json is what `make serving-flags` writes now: a vLLM
    upgrade (or a new container flag) that changes the flags fails here until it is rewritten."""
    current = json.loads(flags_snapshot.render())
    written = json.loads(serving_flags.SNAPSHOT.read_text())
    assert written == current, "the serving flags snapshot is stale: run `make serving-flags`"


@pytest.mark.parametrize(
    "args",
    [
        ["--max-model-len", "2048", "--enable-prefix-caching"],
        ["--max_model_len=2048", "--no-enable-prefix-caching", "--seed", "-1"],
        ["-O3", "--compilation-config.mode=3", "--dtype=bfloat16"],
        ["--enable-lora", "--max-lora-rank", "16", "--max-loras", "4"],
        ["--frobnicate"],
        ["--max-model-len"],
        ["--enforce-eager", "yes"],
        ["--dtype", "fp7"],
        ["--port", "9000"],
        ["--served-model-name", "other"],
        ["--trust-remote-code"],
        ["--headless"],
        ["stray"],
        ["--max-num-seqs", "abc"],
        ["--max-num-seqs", "8", "--gpu-memory-utilization=0.85"],
        ["--gpu-memory-utilization", "0.x"],
        ["--seed", "None"],
        ["--max-model-len", "4k"],
        ["--default-chat-template-kwargs", "{bad"],
        ["--default-chat-template-kwargs", '{"enable_thinking": false}'],
        # argparse's own readings: a value stuck to a two-character flag, prefixes of flags
        ["-qfp8", "-n2"],
        ["-nabc"],
        ["-tp2"],
        ["-tp=2", "-dp", "1"],
        ["--tensor-parallel", "2", "--max-model=2048"],
        ["--max", "3"],
        ["-a", "1"],
        ["--served-model", "other"],
    ],
)
def test_the_control_plane_refuses_what_the_container_would(args: list[str]) -> None:
    """The snapshot check (no vLLM) and the container's own parser agree on good and bad args."""
    assert (serving_flags.problems(args) == []) == (flags.check(args) == [])
