"""LoRA adapters from the bucket (CONTRACTS.md "Adapters"): a vLLM LoRA resolver over the state records."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import threading
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


class AdapterCache:
    """Adapter folders on local disk, fetched with crc32c checks, least recently used evicted."""

    def __init__(self, root: Path, size: int, client: Any = None) -> None:
        self.root = root
        self.size = size
        self.client = client
        self._lock = threading.Lock()

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
            if self.client is None:
                from google.cloud import storage

                self.client = storage.Client()
            bucket = self.client.bucket(bucket_name)
            for remote in files:
                path = target / remote.name
                if path.is_file():
                    try:
                        weights.verify_file(path, remote)
                        continue
                    except weights.WeightsError:
                        pass
                partial = path.with_name(path.name + ".partial")
                try:
                    blob = bucket.blob(prefix + remote.name)
                    blob.download_to_filename(str(partial), checksum=None)
                    weights.verify_file(partial, remote)
                except weights.WeightsError:
                    partial.unlink(missing_ok=True)
                    raise
                except Exception as error:  # the bucket's errors (missing object, denied, network)
                    partial.unlink(missing_ok=True)
                    raise AdapterError(
                        f"gs://{bucket_name}/{prefix}{remote.name}: {error}"
                    ) from None
                partial.replace(path)
            os.utime(target)  # most recently used
            self._evict(keep=target)
        return target

    def _evict(self, keep: Path) -> None:
        folders = sorted(
            (p for p in self.root.iterdir() if p.is_dir() and p != keep),
            key=lambda p: p.stat().st_mtime,
        )
        while len(folders) + 1 > self.size:
            oldest = folders.pop(0)
            shutil.rmtree(oldest, ignore_errors=True)
            logger.info("adapter evicted from the local cache", extra={"adapter": oldest.name})


def _resolver_class() -> Any:
    from vllm.lora.request import LoRARequest
    from vllm.lora.resolver import LoRAResolver

    class StateBucketResolver(LoRAResolver):  # type: ignore[misc]
        """Resolves `model: <adapter>` from adapters/<model>/<adapter>.json in the state bucket."""

        def __init__(self, store: Store, model: str, cache: AdapterCache) -> None:
            self.store = store
            self.model = model
            self.cache = cache

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
                path = await asyncio.to_thread(self.cache.fetch, record)
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
            return LoRARequest(lora_name=lora_name, lora_int_id=1, lora_path=str(path))

    return StateBucketResolver


def install_resolver(settings: Settings) -> bool:
    """Register the resolver with vLLM when the deployment serves adapters (--enable-lora, a model, a bucket)."""
    if not (settings.args.enable_lora and settings.model_key and settings.state_bucket):
        return False
    from vllm.lora.resolver import LoRAResolverRegistry

    # vLLM consults resolvers only while runtime LoRA updating is on; it reads this at request time.
    os.environ["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "1"
    cache = AdapterCache(settings.cache_dir / "adapters", settings.adapter_cache_size)
    resolver = _resolver_class()(store_for(settings.state_bucket), settings.model_key, cache)
    if RESOLVER_NAME not in LoRAResolverRegistry.get_supported_resolvers():
        LoRAResolverRegistry.register_resolver(RESOLVER_NAME, resolver)
    return True
