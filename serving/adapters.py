"""LoRA adapters from the bucket (CONTRACTS.md "Adapters"): a vLLM LoRA resolver over the state records."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from serving import weights
from serving.errors import BadRequest
from serving.settings import Settings
from serving.state_store import Store, store_for

logger = logging.getLogger(__name__)
RESOLVER_NAME = "modeldrop state bucket"


class AdapterError(BadRequest):
    """An adapter's record or files are unusable: answered 400, as vLLM answers an adapter it cannot load."""


def _storage_client() -> Any:
    from google.cloud import storage

    return storage.Client()


class AdapterCache:
    """Adapter folders on local disk, fetched with crc32c checks, least recently used evicted."""

    def __init__(
        self, root: Path, size: int, make_client: Callable[[], Any] = _storage_client
    ) -> None:
        self.root = root
        self.size = size
        self.make_client = make_client
        self.client: Any = None
        self._lock = threading.Lock()
        # Uses seen since this process started (wall clock, comparable with the folders' mtimes):
        # a request for a loaded adapter never reaches the resolver, so `used` records it instead.
        self._used: dict[str, float] = {}

    def used(self, name: str) -> None:
        """Count a request for adapter `name` as a use (a dict write: cheap on every request)."""
        self._used[name] = time.time()

    def fetch(self, record: dict[str, Any]) -> Path:
        """The local folder of the adapter `record` describes (downloaded unless cached and intact)."""
        try:
            name, uri = str(record["name"]), str(record["uri"])
            files = [
                weights.RemoteFile(str(f["name"]), int(f["size"]), str(f["crc32c"]))
                for f in record["files"]
            ]
        except (KeyError, TypeError, ValueError) as error:
            raise AdapterError(f"adapter record is malformed: {error}") from None
        if any("/" in f.name or f.name.startswith(".") for f in files):
            raise AdapterError(f"adapter {name}: a file name leaves its folder")
        bucket_name, prefix = weights.split_gs_uri(uri)
        target = self.root / name
        with self._lock:
            target.mkdir(parents=True, exist_ok=True)
            for remote in files:
                path = target / remote.name
                if path.is_file():
                    try:
                        weights.verify_file(path, remote)
                        continue
                    except weights.WeightsError:
                        pass
                self._download(bucket_name, prefix, remote, path)
            os.utime(target)  # most recently used, also for the next process on this disk
            self.used(name)
        return target

    def _download(
        self, bucket_name: str, prefix: str, remote: weights.RemoteFile, path: Path
    ) -> None:
        partial = path.with_name(path.name + ".partial")
        try:
            # Built only when a file is missing or bad: an intact cache needs no credentials.
            if self.client is None:
                self.client = self.make_client()
            blob = self.client.bucket(bucket_name).blob(prefix + remote.name)
            blob.download_to_filename(str(partial), checksum=None)
            weights.verify_file(partial, remote)
        except weights.WeightsError:
            partial.unlink(missing_ok=True)
            raise
        except Exception as error:  # the bucket's errors (missing object, denied, network)
            partial.unlink(missing_ok=True)
            raise AdapterError(f"gs://{bucket_name}/{prefix}{remote.name}: {error}") from None
        partial.replace(path)

    def victims(self, keep: str) -> list[str]:
        """The cached adapters, least recently used first, to remove so `size` folders remain."""
        with self._lock:
            folders = [p for p in self.root.iterdir() if p.is_dir() and p.name != keep]
        folders.sort(key=lambda p: max(p.stat().st_mtime, self._used.get(p.name, 0.0)))
        return [p.name for p in folders[: max(0, len(folders) + 1 - self.size)]]

    def remove(self, name: str) -> None:
        with self._lock:
            shutil.rmtree(self.root / name, ignore_errors=True)
            self._used.pop(name, None)
        logger.info("adapter evicted from the local cache", extra={"adapter": name})


# vLLM's packed layers as adapters name their parts: --lora-target-modules qkv_proj covers q_proj.
_PACKED = {"qkv_proj": ("q_proj", "k_proj", "v_proj"), "gate_up_proj": ("gate_proj", "up_proj")}


def adapter_modules(folder: Path) -> set[str]:
    """The modules an adapter has LoRA weights for (`model.layers.0.self_attn.q_proj`), from its
    safetensors header; tensors without `.lora_` in their key (modules_to_save) are not LoRA."""
    from safetensors import safe_open

    path = folder / "adapter_model.safetensors"
    try:
        with safe_open(str(path), framework="pt") as handle:  # reads the header only
            keys = list(handle.keys())
    except Exception as error:  # safetensors' own error for a bad header, or the OS's
        raise AdapterError(f"{path.name} is unreadable: {error}") from None
    modules = {key.split(".lora_", 1)[0] for key in keys if ".lora_" in key}
    return {m.removeprefix("base_model.model.") for m in modules}


def modules_outside(folder: Path, targets: list[str] | None) -> list[str]:
    """The adapter's module suffixes that --lora-target-modules leaves out, sorted ([] when unset).

    vLLM puts LoRA layers only on the target modules and loads an adapter's other weights without
    applying them: served so, the adapter would answer as another model. So they are refused here.
    """
    return names_outside(adapter_modules(folder), targets) if targets else []


def names_outside(modules: Any, targets: list[str] | None) -> list[str]:
    """Of `modules` (full names or suffixes), the suffixes --lora-target-modules leaves out."""
    if not targets:
        return []
    allowed = set(targets)
    for target in targets:
        allowed.update(_PACKED.get(target, ()))
    outside = {
        str(module).rsplit(".", 1)[-1]
        for module in modules
        if module not in allowed and str(module).rsplit(".", 1)[-1] not in allowed
    }
    return sorted(outside)


class UsedLoras(dict[str, Any]):
    """vLLM's registry of loaded adapters (OpenAIServingModels.lora_requests) that counts each lookup.

    vLLM's serving classes look a request's adapter up here by `registry[model]` once per request
    (OpenAIServing._maybe_get_adapters), on every route: that lookup is the adapter's use.
    """

    def __init__(self, loaded: dict[str, Any], cache: AdapterCache) -> None:
        super().__init__(loaded)
        self.cache = cache

    def __getitem__(self, name: str) -> Any:
        self.cache.used(name)
        return super().__getitem__(name)


def _resolver_class() -> Any:
    from vllm.lora.request import LoRARequest
    from vllm.lora.resolver import LoRAResolver

    class StateBucketResolver(LoRAResolver):  # type: ignore[misc]
        """Resolves `model: <adapter>` from adapters/<model>/<adapter>.json in the state bucket."""

        def __init__(
            self, store: Store, model: str, cache: AdapterCache, targets: list[str] | None = None
        ) -> None:
            self.store = store
            self.model = model
            self.cache = cache
            self.targets = targets  # --lora-target-modules, or None: LoRA on every module
            self.runtime_routes = False  # the operator set VLLM_ALLOW_RUNTIME_LORA_UPDATING
            self.models: Any = None  # vLLM's OpenAIServingModels, once the server is built

        def attach(self, app: Any) -> None:
            """Count uses through vLLM's registry (of its built `app`) and unload evicted
            adapters from it; take out the runtime loading routes unless the operator asked."""
            self.models = models = app.state.openai_serving_models
            models.lora_requests = UsedLoras(models.lora_requests, self.cache)
            if not self.runtime_routes:
                if dropped := drop_runtime_loading(app):
                    logger.info(
                        "vLLM's runtime adapter routes are off: adapters come from the bucket, "
                        "checked on upload; VLLM_ALLOW_RUNTIME_LORA_UPDATING=1 keeps them",
                        extra={"paths": dropped},
                    )

        async def resolve_lora(self, base_model_name: str, lora_name: str) -> Any:
            if "/" in lora_name or lora_name.startswith("."):
                return None
            raw = await asyncio.to_thread(
                self.store.read, f"adapters/{self.model}/{lora_name}.json"
            )
            if raw is None:
                return None  # vLLM answers 404, as for any unknown model
            try:
                record = json.loads(raw)
                if not isinstance(record, dict) or (record.get("model"), record.get("name")) != (
                    self.model,
                    lora_name,
                ):
                    raise AdapterError(f"the record is not for {self.model}/{lora_name}")
                # The record names its modules (on_upload read them): refused before any download.
                # Records from before it did are checked on the fetched files.
                recorded = record.get("modules")
                if isinstance(recorded, list):
                    self._check_targets(recorded)
                path = await asyncio.to_thread(self.cache.fetch, record)
                if self.targets:
                    self._check_targets(adapter_modules(path))
            except (ValueError, AdapterError, weights.WeightsError) as error:
                # Found but unusable. vLLM would answer its 400 without the reason, so the request
                # middleware answers this one (serving.errors), naming the adapter and the cause.
                reason = error.message if isinstance(error, AdapterError) else str(error)
                logger.warning("adapter not loaded", extra={"adapter": lora_name, "error": reason})
                raise AdapterError(
                    f"LoRA adapter '{lora_name}' was found but could not be loaded: {reason}",
                    param="model",
                ) from None
            logger.info("adapter fetched", extra={"adapter": lora_name, "path": str(path)})
            for name in self.cache.victims(keep=lora_name):
                await self._evict(name)
            # vLLM replaces this id with its own counter's next value (OpenAIServingModels.
            # resolve_lora), so every adapter, and every reload of one, gets an id of its own.
            return LoRARequest(lora_name=lora_name, lora_int_id=1, lora_path=str(path))

        def _check_targets(self, modules: Any) -> None:
            if outside := names_outside(modules, self.targets):
                raise AdapterError(
                    f"it has weights for {', '.join(outside)}, and this deployment applies "
                    f"LoRA only to {', '.join(self.targets or ())} (--lora-target-modules)"
                )

        async def _evict(self, name: str) -> None:
            # Out of vLLM's registry before the folder goes: a request that finds the name there
            # would hand the engine the folder's path. The next request for it resolves it again
            # (a new id, a fresh download). The engine keeps the weights it loaded for requests in
            # flight and drops them from its own LRU; it never reads the old folder again. This is
            # what vLLM's unload_lora_adapter does, without its per-name lock: the request now
            # resolving that name holds it, and may be waiting for this one's cache lock.
            if self.models is not None:
                self.models.lora_requests.pop(name, None)
            await asyncio.to_thread(self.cache.remove, name)

    return StateBucketResolver


def install_resolver(settings: Settings) -> Any:
    """Register the resolver with vLLM when the deployment serves adapters (--enable-lora, a model, a bucket).

    Returns the resolver (its `attach` takes vLLM's serving models once built), or None.
    """
    if not (settings.args.enable_lora and settings.model_key and settings.state_bucket):
        return None
    from vllm.lora.resolver import LoRAResolverRegistry

    # vLLM consults resolvers only while runtime LoRA updating is on; it reads this at request time.
    # It also adds routes that load any folder by path while it is on (attach takes those out).
    asked = os.environ.get("VLLM_ALLOW_RUNTIME_LORA_UPDATING", "").strip().lower() in ("1", "true")
    os.environ["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "1"
    cache = AdapterCache(settings.cache_dir / "adapters", settings.adapter_cache_size)
    targets = getattr(settings.args, "lora_target_modules", None)
    resolver = _resolver_class()(
        store_for(settings.state_bucket), settings.model_key, cache, targets
    )
    if not targets:
        logger.info(
            "LoRA layers on every linear layer: a batch mixing adapters runs the LoRA kernels on "
            "all of them; adapters trained on fewer modules serve faster with "
            "--lora-target-modules naming those (docs/benchmarks.md, Adapters)"
        )
    if RESOLVER_NAME not in LoRAResolverRegistry.get_supported_resolvers():
        LoRAResolverRegistry.register_resolver(RESOLVER_NAME, resolver)
    registered: Any = LoRAResolverRegistry.get_resolver(RESOLVER_NAME)  # the first, per process
    registered.runtime_routes = asked
    return registered


# What vLLM adds while VLLM_ALLOW_RUNTIME_LORA_UPDATING is on (vllm/entrypoints/serve/lora/
# api_router.py, and the SageMaker standards' LoRA routes its app bootstraps from the same
# handlers): each loads an adapter from any path on the replica's disk or the Hub, past on_upload's
# checks (safetensors only, base model, rank) and --lora-target-modules. vLLM itself warns that
# they are for local development only; without the variable, `vllm serve` has none of them.
RUNTIME_LOADING_PATHS = frozenset(
    {"/v1/load_lora_adapter", "/v1/unload_lora_adapter", "/adapters", "/adapters/{adapter_name}"}
)


def drop_runtime_loading(app: Any) -> list[str]:
    """Take vLLM's runtime adapter routes out of its built `app`; returns the paths taken out.

    They then answer as in `vllm serve` without the variable: 404, as any path it does not have.
    """
    routes = app.router.routes
    dropped = [r.path for r in routes if getattr(r, "path", None) in RUNTIME_LOADING_PATHS]
    routes[:] = [r for r in routes if getattr(r, "path", None) not in RUNTIME_LOADING_PATHS]
    return sorted(set(dropped))


def check_static_adapters(args: Any) -> None:
    """Refuse, before the engine loads, a --lora-modules adapter with weights the deployment's
    --lora-target-modules leaves out: vLLM would load it and serve it without those weights."""
    targets = getattr(args, "lora_target_modules", None)
    for module in getattr(args, "lora_modules", None) or ():
        folder = Path(str(module.path))
        if not targets or not (folder / "adapter_model.safetensors").is_file():
            continue  # vLLM's own checks answer a folder it cannot load (or a Hub name)
        if outside := modules_outside(folder, targets):
            raise AdapterError(
                f"--lora-modules {module.name} ({folder}) has weights for {', '.join(outside)}, "
                f"and --lora-target-modules applies LoRA only to {', '.join(targets)}"
            )
