"""Builders with overrides for commands and settings, so each test states only what it cares about."""

from __future__ import annotations

import itertools
from typing import Any

_ids = itertools.count(1)


def make_command(action: str = "deploy", **overrides: Any) -> dict[str, Any]:
    """A valid command body for `action`, with `overrides` applied (None removes a key)."""
    base: dict[str, dict[str, Any]] = {
        "deploy": {"model": "gemma-tiny"},
        "undeploy": {"endpoint": "gemma-tiny"},
        "scale": {"endpoint": "gemma-tiny", "min_replicas": 1, "max_replicas": 2},
        "traffic": {"endpoint": "gemma-tiny", "split": {"v1": 90, "v2": 10}},
        "delete-endpoint": {"endpoint": "gemma-tiny"},
        "register": {"model": "gemma-tiny", "version": "v1"},
        "wake": {"endpoint": "gemma-tiny"},
    }
    body = {"request_id": f"req-{next(_ids)}", "action": action, **base[action]}
    for key, value in overrides.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    return body


def make_env(**overrides: str) -> dict[str, str]:
    """A complete MODELDROP_* environment, with `overrides` (lower-case names) applied."""
    env = {
        "project": "modeldrop-test",
        "region": "us-central1",
        "weights_bucket": "weights",
        "state_bucket": "state",
        "commands_topic": "commands",
        "results_topic": "results",
        "serving_image": "us-docker.pkg.dev/modeldrop-test/modeldrop/serving:0.1.0",
        **overrides,
    }
    return {f"MODELDROP_{key.upper()}": value for key, value in env.items()}


def make_safetensors(tensors: dict[str, list[int]] | None = None, dtype: str = "F32") -> bytes:
    """A well-formed safetensors file (zeros) holding `tensors` (name -> shape), built by hand."""
    import json
    import math
    import struct

    width = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8, "U8": 1}[dtype]
    header: dict[str, Any] = {}
    offset = 0
    for name, shape in (tensors or {"lm_head.weight": [2, 2]}).items():
        size = math.prod(shape) * width
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)  # safetensors pads the header to 8 bytes
    return struct.pack("<Q", len(raw)) + raw + bytes(offset)
