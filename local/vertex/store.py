"""The emulator's state: models, endpoints and operations in memory, one JSON file each on disk."""

from __future__ import annotations

import json
import logging
import os
import random
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from local.vertex.resources import Endpoint, Model, Operation

log = logging.getLogger(__name__)
T = TypeVar("T", bound=BaseModel)


class ModelVersions(BaseModel):
    """Every version of one model, oldest first; the registry keeps them under one name."""

    name: str
    versions: list[Model]
    next_version: int = 1
    # Model-level labels (faithful: merged with each version's labels when a version is read).
    labels: dict[str, str] = {}


class Store:
    """In-memory state written through to `data_dir` (no disk at all when it is None)."""

    def __init__(self, data_dir: Path | None, seed: int | None = None) -> None:
        self._dir = data_dir
        self._ids = random.Random(seed)
        self.models: dict[str, ModelVersions] = {}
        self.endpoints: dict[str, Endpoint] = {}
        self.operations: dict[str, Operation] = {}
        if data_dir is not None:
            for kind in ("models", "endpoints", "operations"):
                (data_dir / kind).mkdir(parents=True, exist_ok=True)
            self._load()

    def new_id(self, digits: int = 19) -> str:
        """A numeric id like Vertex's (endpoints and models: 19 digits, deployed models: fewer)."""
        low = 10 ** (digits - 1)
        return str(self._ids.randrange(low, 10 * low))

    def save_model(self, record: ModelVersions) -> None:
        self.models[record.name] = record
        self._write("models", record.name, record)

    def delete_model(self, name: str) -> None:
        self.models.pop(name, None)
        self._remove("models", name)

    def save_endpoint(self, endpoint: Endpoint) -> None:
        assert endpoint.name is not None
        self.endpoints[endpoint.name] = endpoint
        self._write("endpoints", endpoint.name, endpoint)

    def delete_endpoint(self, name: str) -> None:
        self.endpoints.pop(name, None)
        self._remove("endpoints", name)

    def save_operation(self, operation: Operation) -> None:
        self.operations[operation.name] = operation
        self._write("operations", operation.name, operation)

    def _path(self, kind: str, name: str) -> Path:
        assert self._dir is not None
        return self._dir / kind / (name.replace("/", "~") + ".json")

    def _write(self, kind: str, name: str, value: BaseModel) -> None:
        if self._dir is None:
            return
        path = self._path(kind, name)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(value.model_dump_json(by_alias=True, exclude_none=True))
        # A crash mid-write must leave the previous version, never half a file.
        os.replace(tmp, path)

    def _remove(self, kind: str, name: str) -> None:
        if self._dir is not None:
            self._path(kind, name).unlink(missing_ok=True)

    def _load(self) -> None:
        assert self._dir is not None
        self.models = {m.name: m for m in self._read_all("models", ModelVersions)}
        self.endpoints = {e.name or "": e for e in self._read_all("endpoints", Endpoint)}
        self.operations = {o.name: o for o in self._read_all("operations", Operation)}

    def _read_all(self, kind: str, cls: type[T]) -> list[T]:
        assert self._dir is not None
        items: list[tuple[str, T]] = []
        for path in (self._dir / kind).glob("*.json"):
            try:
                item = cls.model_validate(json.loads(path.read_text()))
            except (ValueError, ValidationError) as error:
                log.warning("skipping unreadable %s: %s", path, error)
                continue
            items.append((_created(item), item))
        # Listing order is creation order, as before the restart.
        items.sort(key=lambda pair: pair[0])
        return [item for _, item in items]


def _created(item: BaseModel) -> str:
    if isinstance(item, ModelVersions):
        return item.versions[0].create_time or "" if item.versions else ""
    return str(getattr(item, "create_time", None) or "")
