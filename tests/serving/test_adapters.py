"""LoRA adapters from the bucket on the real CPU engine: one server with --enable-lora for the module."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from local.processes import stop
from serving.weights import crc32c_of

pytestmark = pytest.mark.engine

MODEL = "tiny"
WEIGHTS_BUCKET = "weights-adapters"
RANK = 8
# The tiny model's attention (local/tiny_model.py): hidden 256, 4 heads and 1 KV head of 64, 2 layers.
HIDDEN, Q_OUT, V_OUT, LAYERS = 256, 4 * 64, 1 * 64, 2


def _write_adapter(folder: Path, seed: int) -> Path:
    """A random PEFT-format LoRA adapter on q_proj and v_proj of every layer of the tiny model."""
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}
    for layer in range(LAYERS):
        for module, out in (("q_proj", Q_OUT), ("v_proj", V_OUT)):
            key = f"base_model.model.model.layers.{layer}.self_attn.{module}"
            a = torch.randn(RANK, HIDDEN, generator=generator) * 0.5
            b = torch.randn(out, RANK, generator=generator) * 0.5
            tensors[f"{key}.lora_A.weight"] = a.to(torch.bfloat16)
            tensors[f"{key}.lora_B.weight"] = b.to(torch.bfloat16)
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": MODEL,
        "r": RANK,
        "lora_alpha": 2 * RANK,
        "lora_dropout": 0.0,
        "target_modules": ["q_proj", "v_proj"],
        "bias": "none",
        "fan_in_fan_out": False,
        "modules_to_save": None,
    }
    (folder / "adapter_config.json").write_text(json.dumps(config))
    return folder


def _record(name: str, folder: Path) -> dict[str, Any]:
    """The state record on_upload writes for an adapter (CONTRACTS.md "Adapters")."""
    files = [
        {"name": p.name, "size": p.stat().st_size, "crc32c": crc32c_of(p)}
        for p in sorted(folder.iterdir())
    ]
    return {
        "model": MODEL,
        "name": name,
        "uri": f"gs://{WEIGHTS_BUCKET}/models/{MODEL}/adapters/{name}/",
        "rank": RANK,
        "files": files,
        "registered_at": "2026-01-01T00:00:00Z",
    }


@pytest.fixture(scope="module")
def state(gcs_host: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local-folder state bucket with a good and a corrupted adapter record; files in fake GCS."""
    from google.cloud import storage

    client = storage.Client(project="modeldrop-test")
    if not client.bucket(WEIGHTS_BUCKET).exists():
        client.create_bucket(WEIGHTS_BUCKET)
    bucket = client.bucket(WEIGHTS_BUCKET)
    root = tmp_path_factory.mktemp("adapters")
    state = root / "state"
    for name, seed in (("tiny-lora", 1), ("tiny-lora-corrupt", 2)):
        folder = _write_adapter(root / name, seed)
        record = _record(name, folder)
        if name == "tiny-lora-corrupt":
            # The object in the bucket is not the one the record describes.
            (folder / "adapter_model.safetensors").write_bytes(
                _write_adapter(root / "other", 3).joinpath("adapter_model.safetensors").read_bytes()
            )
        for path in folder.iterdir():
            blob = bucket.blob(f"models/{MODEL}/adapters/{name}/{path.name}")
            blob.upload_from_filename(str(path))
        target = state / "adapters" / MODEL / f"{name}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(record))
    return state


@pytest.fixture(scope="module")
def server(
    state: Path,
    tiny_model: Path,
    tmp_path_factory: pytest.TempPathFactory,
    launch: Callable[..., Any],
) -> Iterator[Any]:
    env = {
        "AIP_STORAGE_URI": str(tiny_model),
        "MODELDROP_SERVING_MAX_MODEL_LEN": "512",
        "MODELDROP_MODEL": MODEL,
        "MODELDROP_STATE_BUCKET": str(state),
        "MODELDROP_REPLICA_ID": "replica-0",
    }
    log = tmp_path_factory.mktemp("serving-adapters") / "serving.log"
    args = ["--served-model-name", MODEL, "--enable-lora", "--max-lora-rank", str(RANK)]
    running = launch(args, log, env=env)
    try:
        yield running
    finally:
        stop(running.child, grace_s=30)


@pytest.fixture(scope="module")
def http(server: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=120) as client:
        yield client


def _completion(http: httpx.Client, model: str) -> httpx.Response:
    body = {"model": model, "prompt": "the model", "max_tokens": 3, "temperature": 0, "logprobs": 1}
    return http.post("/v1/completions", json=body)


def test_an_adapter_in_the_bucket_is_served_by_name(http: httpx.Client) -> None:
    """`model: <adapter>` fetches the adapter, loads it, and answers chat and completions with it."""
    chat = http.post(
        "/v1/chat/completions",
        json={
            "model": "tiny-lora",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 3,
        },
    )
    assert chat.status_code == 200, chat.text
    assert chat.json()["model"] == "tiny-lora"
    adapted, base = _completion(http, "tiny-lora"), _completion(http, MODEL)
    assert adapted.status_code == 200, adapted.text
    assert base.status_code == 200, base.text
    # The adapter's weights change the logits: it is applied, not ignored.
    adapted_logprobs = adapted.json()["choices"][0]["logprobs"]["token_logprobs"]
    assert adapted_logprobs != base.json()["choices"][0]["logprobs"]["token_logprobs"]


def test_models_lists_the_adapter_after_first_use(http: httpx.Client) -> None:
    """/v1/models lists the base model and, once used, the adapter with the base as its parent."""
    assert _completion(http, "tiny-lora").status_code == 200
    cards = {card["id"]: card for card in http.get("/v1/models").json()["data"]}
    assert MODEL in cards
    assert cards["tiny-lora"]["parent"] == MODEL


def test_an_unknown_adapter_answers_404_like_an_unknown_model(http: httpx.Client) -> None:
    """A name with no record answers vLLM's own 404 for a model that does not exist."""
    response = _completion(http, "no-such-adapter")
    assert response.status_code == 404, response.text
    error = response.json()["error"]
    assert "no-such-adapter" in error["message"]
    assert error["param"] == "model"
    assert "no-such-adapter" not in {c["id"] for c in http.get("/v1/models").json()["data"]}


def test_an_adapter_whose_files_fail_the_crc32c_check_is_refused(
    http: httpx.Client, server: Any
) -> None:
    """A record whose crc32c disagrees with the object is refused with a clear error, never served."""
    response = _completion(http, "tiny-lora-corrupt")
    assert 400 <= response.status_code < 600, response.text
    message = response.json()["error"]["message"]
    assert "tiny-lora-corrupt" in message
    assert "crc32c" in message
    assert "tiny-lora-corrupt" not in {c["id"] for c in http.get("/v1/models").json()["data"]}
    # Asked again, it is refused again (the bad download is not cached as a loaded adapter).
    assert _completion(http, "tiny-lora-corrupt").status_code == response.status_code
