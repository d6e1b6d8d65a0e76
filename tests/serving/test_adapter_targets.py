"""--lora-target-modules: an adapter with weights outside the deployment's LoRA modules is refused.

vLLM puts LoRA layers only on the target modules and would load such an adapter without applying its
other weights. The container's resolver (the real one, over a local-folder state bucket and a disk
cache that already holds the adapters) refuses it by name instead. No engine is started.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from serving.adapters import AdapterCache, AdapterError, _resolver_class, modules_outside
from serving.settings import Settings
from serving.state_store import store_for
from serving.weights import crc32c_of

MODEL = "tiny"


def _adapter(folder: Path, modules: tuple[str, ...]) -> Path:
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    tensors = {}
    for module in modules:
        part = "mlp" if module in ("gate_proj", "up_proj", "down_proj") else "self_attn"
        key = f"base_model.model.model.layers.0.{part}.{module}"
        tensors[f"{key}.lora_A.weight"] = torch.zeros(2, 8, dtype=torch.bfloat16)
        tensors[f"{key}.lora_B.weight"] = torch.zeros(8, 2, dtype=torch.bfloat16)
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    config = {"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": list(modules)}
    (folder / "adapter_config.json").write_text(json.dumps(config))
    return folder


def _resolver(tmp_path: Path, targets: list[str] | None, **adapters: tuple[str, ...]) -> Any:
    """The container's resolver, its disk cache already holding each adapter (no download)."""
    state, cache = tmp_path / "state", tmp_path / "cache"
    for name, modules in adapters.items():
        folder = _adapter(cache / "adapters" / name, modules)
        files = [
            {"name": p.name, "size": p.stat().st_size, "crc32c": crc32c_of(p)}
            for p in sorted(folder.iterdir())
        ]
        record = {"model": MODEL, "name": name, "uri": f"gs://w/{name}/", "files": files}
        path = state / "adapters" / MODEL / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record))

    def no_client() -> None:
        raise AssertionError("an intact cached adapter needs no storage client")

    adapter_cache = AdapterCache(cache / "adapters", 8, make_client=no_client)
    return _resolver_class()(store_for(str(state)), MODEL, adapter_cache, targets)


def test_an_adapter_inside_the_target_modules_is_served(tmp_path: Path) -> None:
    resolver = _resolver(tmp_path, ["q_proj", "v_proj"], attn=("q_proj", "v_proj"))
    request = asyncio.run(resolver.resolve_lora(MODEL, "attn"))
    assert request.lora_name == "attn"


_PACKED_TARGETS = ["qkv_proj", "gate_up_proj"]


def test_packed_targets_pass_their_parts_and_refuse_the_rest(tmp_path: Path) -> None:
    folder = _adapter(tmp_path / "a", ("q_proj", "k_proj", "v_proj", "up_proj", "down_proj"))
    assert modules_outside(folder, _PACKED_TARGETS) == ["down_proj"]
    assert modules_outside(folder, None) == []
    assert modules_outside(folder, []) == []


def test_an_adapter_with_weights_outside_the_target_modules_is_refused_by_name(
    tmp_path: Path,
) -> None:
    resolver = _resolver(
        tmp_path, ["q_proj", "k_proj", "v_proj", "o_proj"], mlp=("q_proj", "gate_proj", "down_proj")
    )
    with pytest.raises(AdapterError) as raised:
        asyncio.run(resolver.resolve_lora(MODEL, "mlp"))
    message = raised.value.message
    assert "LoRA adapter 'mlp' was found but could not be loaded" in message
    assert "down_proj, gate_proj" in message
    assert "q_proj, k_proj, v_proj, o_proj (--lora-target-modules)" in message


def test_a_record_naming_its_modules_is_refused_before_any_download(tmp_path: Path) -> None:
    """on_upload records the adapter's modules; an adapter outside the targets is then refused
    from its record alone: nothing fetched, no storage client built."""
    resolver = _resolver(tmp_path, ["q_proj", "v_proj"])
    record = {
        "model": MODEL,
        "name": "mlp",
        "uri": "gs://w/mlp/",
        "modules": ["down_proj", "q_proj"],
    }
    record["files"] = [{"name": "adapter_model.safetensors", "size": 10, "crc32c": "AAAAAA=="}]
    (tmp_path / "state" / "adapters" / MODEL).mkdir(parents=True)
    (tmp_path / "state" / "adapters" / MODEL / "mlp.json").write_text(json.dumps(record))
    with pytest.raises(AdapterError, match=r"it has weights for down_proj, and this deployment"):
        asyncio.run(resolver.resolve_lora(MODEL, "mlp"))
    assert not (tmp_path / "cache" / "adapters" / "mlp").exists()


def test_without_target_modules_every_adapter_is_served(tmp_path: Path) -> None:
    resolver = _resolver(tmp_path, None, mlp=("q_proj", "gate_proj", "down_proj"))
    assert asyncio.run(resolver.resolve_lora(MODEL, "mlp")).lora_name == "mlp"


def test_an_unreadable_weights_header_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "adapter_model.safetensors").write_bytes(b"\xff" * 8 + b"{}")
    with pytest.raises(AdapterError, match="unreadable"):
        modules_outside(folder, ["q_proj"])


def test_the_resolver_takes_the_deployments_target_modules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vllm.lora.resolver import LoRAResolverRegistry

    from serving.adapters import install_resolver

    monkeypatch.setattr(LoRAResolverRegistry, "resolvers", {})  # vLLM's registry is per process
    monkeypatch.setenv("VLLM_ALLOW_RUNTIME_LORA_UPDATING", "0")  # install_resolver turns it on
    argv = ["--model", "/m", "--enable-lora", "--lora-target-modules", "q_proj", "v_proj"]
    env = {"MODELDROP_MODEL": MODEL, "MODELDROP_STATE_BUCKET": str(tmp_path)}
    settings = Settings.load([*argv, "--cache-dir", str(tmp_path / "c")], env)
    assert install_resolver(settings).targets == ["q_proj", "v_proj"]


def test_a_preloaded_adapter_outside_the_target_modules_is_refused_before_the_engine(
    tmp_path: Path, tiny_model: Path, launch: Any
) -> None:
    """--lora-modules adapters are checked at start: the container ends FAILED with the reason
    (vLLM would load the adapter and serve it without its MLP weights) and exits, no engine built."""
    from local.processes import ProcessError

    mlp = _adapter(tmp_path / "mlp", ("q_proj", "down_proj"))
    args = ["--model", str(tiny_model), "--enable-lora", "--max-lora-rank", "8"]
    args += ["--lora-modules", f"mlp={mlp}", "--lora-target-modules", "q_proj", "v_proj"]
    with pytest.raises(ProcessError) as failed:
        launch(args, tmp_path / "serving.log", timeout_s=90)
    log = failed.value.args[0]
    assert f"--lora-modules mlp ({mlp}) has weights for down_proj" in log
    assert "EngineCore" not in log  # refused before vLLM's engine process started


def test_the_static_check_reads_vllms_parsed_lora_modules(tmp_path: Path) -> None:
    from serving.adapters import check_static_adapters

    attn, mlp = (
        _adapter(tmp_path / "attn", ("q_proj", "v_proj")),
        _adapter(tmp_path / "mlp", ("up_proj",)),
    )
    base = ["--model", "/m", "--enable-lora", "--lora-modules", f"attn={attn}", f"mlp={mlp}"]
    check_static_adapters(Settings.load(base, {}).args)  # no targets: LoRA on every module
    targeted = Settings.load([*base, "--lora-target-modules", "qkv_proj", "gate_up_proj"], {})
    check_static_adapters(targeted.args)  # packed names cover their parts
    with pytest.raises(AdapterError, match=r"--lora-modules mlp .* has weights for up_proj"):
        check_static_adapters(Settings.load([*base, "--lora-target-modules", "qkv_proj"], {}).args)
