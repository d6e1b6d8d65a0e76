"""The LoRA kernel tuner writes what vLLM's own reader finds (the tuning itself needs CUDA)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from serving import lora_tune

GEMMA_2B = {
    "hidden_size": 2048,
    "num_attention_heads": 8,
    "num_key_value_heads": 1,
    "head_dim": 256,
    "intermediate_size": 16384,
}


def test_the_shapes_are_the_linear_layers_as_vllm_fuses_them() -> None:
    found = {(s.op, s.name): (s.k, s.outs) for s in lora_tune.shapes(GEMMA_2B, 16)}
    assert found == {
        ("shrink", "qkv_proj"): (2048, (16, 16, 16)),
        ("expand", "qkv_proj"): (16, (2048, 256, 256)),
        ("shrink", "o_proj"): (2048, (16,)),
        ("expand", "o_proj"): (16, (2048,)),
        ("shrink", "gate_up_proj"): (2048, (16, 16)),
        ("expand", "gate_up_proj"): (16, (16384, 16384)),
        ("shrink", "down_proj"): (16384, (16,)),
        ("expand", "down_proj"): (16, (2048,)),
    }


def test_every_shape_has_candidates_that_cover_its_input() -> None:
    for shape in lora_tune.shapes(GEMMA_2B, 16):
        configs = list(lora_tune.candidates(shape))
        assert len(configs) >= 9, shape
        if shape.op == "shrink":
            assert all(c["block_k"] * c["split_k"] <= 2 * shape.k for c in configs)


def test_vllms_reader_finds_the_tuned_configs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The files' names and layout are what vllm.lora.ops.triton_ops.utils reads; every slice count
    is in them (vLLM looks it up exactly), and where two modules share a key the searched one wins."""
    import torch
    from vllm.lora.ops.triton_ops import utils

    gpu = "NVIDIA H100 80GB HBM3"
    searched = {"qkv_proj", "o_proj"}
    results = []
    for i, shape in enumerate(lora_tune.shapes(GEMMA_2B, 16)):
        for m in (16, 64):
            config = {**next(lora_tune.candidates(shape)), "num_warps": 4 + i, "max_nreg": None}
            results.append(
                (shape, m, {"config": config, "us": 1.0 if shape.name in searched else None})
            )
    for op, table in lora_tune.tables(results, max_loras=10).items():
        (tmp_path / lora_tune.file_name(gpu, op)).write_text(json.dumps(table))
    monkeypatch.setattr(utils.envs, "VLLM_TUNED_CONFIG_FOLDER", str(tmp_path), raising=False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: gpu)
    utils.load_lora_op_config.cache_clear()
    try:
        for i, shape in enumerate(lora_tune.shapes(GEMMA_2B, 16)):
            got = utils.get_lora_op_configs.__wrapped__(
                shape.op,
                max_loras=11,  # the kernels see max_loras + 1 slots
                batch=60,  # nearest tuned count: 64
                hidden_size=shape.k if shape.op == "shrink" else max(shape.outs),
                rank=shape.outs[0] if shape.op == "shrink" else shape.k,
                num_slices=len(shape.outs),
                add_inputs=True if shape.op == "expand" else None,
            )
            # down_proj's expand is o_proj's key (rank 16 -> 2048): o_proj's searched config
            expected = 4 + (3 if (shape.op, shape.name) == ("expand", "down_proj") else i)
            assert got["num_warps"] == expected, (shape, got)
    finally:
        utils.load_lora_op_config.cache_clear()
