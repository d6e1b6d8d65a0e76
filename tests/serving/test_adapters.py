"""LoRA adapters from the bucket on the real CPU engine: one server with --enable-lora for the module."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from local.processes import stop
from serving.adapters import AdapterCache
from serving.weights import crc32c_of

pytestmark = pytest.mark.engine

MODEL = "tiny"
WEIGHTS_BUCKET = "weights-adapters"
RANK = 8
# The tiny model's attention (local/tiny_model.py): hidden 256, 4 heads and 1 KV head of 64, 2 layers.
HIDDEN, Q_OUT, V_OUT, LAYERS = 256, 4 * 64, 1 * 64, 2
PREDICT = "/predict"
CACHE_SIZE = 2  # adapter folders on disk: small, so the eviction test evicts
# Good adapters in the bucket and their seeds; evict-* are used only by the eviction test.
ADAPTERS = {"tiny-lora": 1, "tiny-lora-2": 4, "evict-a": 5, "evict-b": 6, "evict-c": 7}


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
    for name, seed in (*ADAPTERS.items(), ("tiny-lora-corrupt", 2)):
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
def adapter_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The server's cache folder; adapters land in its adapters/ folder."""
    return tmp_path_factory.mktemp("serving-cache")


@pytest.fixture(scope="module")
def server(
    state: Path,
    adapter_cache: Path,
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
    args += ["--max-loras", "2", "--adapter-cache-size", str(CACHE_SIZE)]
    args += ["--cache-dir", str(adapter_cache)]
    running = launch(args, log, env=env)
    try:
        yield running
    finally:
        stop(running.child, grace_s=30)


@pytest.fixture(scope="module")
def http(server: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=120) as client:
        yield client


def _completion(http: httpx.Client, model: str, route: str = "/v1/completions") -> httpx.Response:
    body = {"model": model, "prompt": "the model", "max_tokens": 3, "temperature": 0, "logprobs": 1}
    return http.post(route, json=body)


def _logprobs(response: httpx.Response) -> list[float]:
    assert response.status_code == 200, response.text
    return list(response.json()["choices"][0]["logprobs"]["token_logprobs"])


def _loaded(http: httpx.Client) -> set[str]:
    """The adapters in vLLM's registry (what /v1/models lists besides the base model)."""
    return {c["id"] for c in http.get("/v1/models").json()["data"]} - {MODEL}


class _NoClient:
    """A client factory that records being called: the cache must not need one."""

    calls = 0

    def __call__(self) -> None:
        self.calls += 1
        raise AssertionError("no storage client should be built for an intact cached adapter")


def test_an_intact_cached_adapter_needs_no_storage_client(state: Path, tmp_path: Path) -> None:
    """fetch of an adapter already on disk with the record's crc32c builds no client (no credentials)."""
    record = json.loads((state / "adapters" / MODEL / "tiny-lora.json").read_text())
    folder = _write_adapter(tmp_path / "adapters" / "tiny-lora", seed=1)
    make_client = _NoClient()
    cache = AdapterCache(tmp_path / "adapters", size=4, make_client=make_client)
    assert cache.fetch(record) == folder
    assert make_client.calls == 0


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


def test_vllms_runtime_loading_routes_are_off_as_in_vllm_serve_by_default(
    http: httpx.Client, server: Any
) -> None:
    """Serving adapters from the bucket turns on vLLM's runtime LoRA updating (its resolvers need
    it), which also adds routes loading any path on the replica past on_upload's checks. They
    answer 404, as in `vllm serve` without the variable, and the log says why and how to keep them."""
    body = {"lora_name": "sideload", "lora_path": "/tmp"}
    for path in ("/v1/load_lora_adapter", "/v1/unload_lora_adapter", "/adapters"):
        assert http.post(path, json=body).status_code == 404, path
    assert http.delete("/adapters/sideload").status_code == 404  # SageMaker's unregister route
    assert "sideload" not in _loaded(http)
    assert "vLLM's runtime adapter routes are off" in server.child.log_tail(400)


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


def test_an_adapter_answers_on_every_route(http: httpx.Client) -> None:
    """chat, completions, Vertex predict (parameters.model), rawPredict and streamRawPredict use the adapter."""
    direct = _logprobs(_completion(http, "tiny-lora"))
    assert _logprobs(_completion(http, "tiny-lora", PREDICT)) == direct  # rawPredict, completion
    assert direct != _logprobs(_completion(http, MODEL))
    chat = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "temperature": 0}
    for route in ("/v1/chat/completions", PREDICT):  # OpenAI chat; rawPredict, chat
        answer = http.post(route, json={"model": "tiny-lora", **chat})
        assert answer.status_code == 200, answer.text
        assert answer.json()["model"] == "tiny-lora"
    parameters = {"model": "tiny-lora", "max_tokens": 3, "temperature": 0, "logprobs": 1}
    predict = http.post(PREDICT, json={"instances": ["the model"], "parameters": parameters})
    assert predict.status_code == 200, predict.text
    prediction = predict.json()["predictions"][0]
    assert prediction["model"] == "tiny-lora"
    assert prediction["choices"][0]["logprobs"]["token_logprobs"] == direct
    stream = {"model": "tiny-lora", "prompt": "the model", "max_tokens": 3, "stream": True}
    with http.stream("POST", PREDICT, json=stream) as events:  # streamRawPredict
        assert events.headers["content-type"].startswith("text/event-stream")
        data = [line[6:] for line in events.iter_lines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    assert {json.loads(d)["model"] for d in data[:-1]} == {"tiny-lora"}


def test_two_adapters_in_one_server_answer_with_their_own_weights(http: httpx.Client) -> None:
    """Each resolved adapter gets its own engine id: the second is not served the first's weights."""
    first, second = (
        _logprobs(_completion(http, "tiny-lora")),
        _logprobs(_completion(http, "tiny-lora-2")),
    )
    assert first != second
    assert {"tiny-lora", "tiny-lora-2"} <= _loaded(http)
    # Asked again in the other order, each answers as before.
    assert _logprobs(_completion(http, "tiny-lora-2")) == second
    assert _logprobs(_completion(http, "tiny-lora")) == first


def test_eviction_drops_the_least_recently_used_adapter_and_vllm_forgets_it(
    http: httpx.Client, adapter_cache: Path, server: Any
) -> None:
    """A use through vLLM's registry counts; the evicted adapter leaves vLLM and is fetched again when asked."""
    folders = adapter_cache / "adapters"
    base = _logprobs(_completion(http, MODEL))
    first: dict[str, list[float]] = {}
    for name in ("evict-a", "evict-b"):
        first[name] = _logprobs(_completion(http, name))
        time.sleep(0.05)  # distinct use times, whatever the clock's resolution
    assert {p.name for p in folders.iterdir()} == {"evict-a", "evict-b"}  # older ones evicted
    # evict-a is loaded: this request never reaches the resolver, yet makes it the most recent.
    assert _logprobs(_completion(http, "evict-a")) == first["evict-a"]
    time.sleep(0.05)
    _logprobs(_completion(http, "evict-c"))
    assert {p.name for p in folders.iterdir()} == {"evict-a", "evict-c"}
    loaded = _loaded(http)
    assert "evict-b" not in loaded and {"evict-a", "evict-c"} <= loaded
    # Asked again, evict-b is fetched again and served with its own weights, not the base's.
    fetched_before = server.log().count('"adapter": "evict-b"')
    again = _logprobs(_completion(http, "evict-b"))
    assert again == first["evict-b"] and again != base
    assert (folders / "evict-b" / "adapter_model.safetensors").is_file()
    assert server.log().count('"adapter": "evict-b"') > fetched_before
