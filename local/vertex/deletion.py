"""Deleting models and versions: refused while deployed, carried out as long-running operations."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from local.vertex import naming, operations
from local.vertex.errors import invalid, precondition
from local.vertex.resources import Model, Operation

if TYPE_CHECKING:
    from local.vertex.registry import Registry

DEFAULT_ALIAS = "default"  # registry.DEFAULT_ALIAS (importing it here would be circular)


def check_not_deleting(self: Registry, model: Model) -> None:
    """A model or version whose delete operation runs takes no new deployment (assumed)."""
    for key in (model.name or "", f"{model.name}@{model.version_id}"):
        if key in self.deleting:
            raise precondition(f"Model {key} is being deleted.")


def delete_model(self: Registry, name: str) -> Operation:
    """Delete every version; refused while any of them is deployed."""
    record = self.record(name)
    if naming.split_version(name)[1] is not None:
        raise invalid("To delete one version, call :deleteVersion; delete takes the model.")
    deployed = [ref.endpoint for m in record.versions for ref in m.deployed_models]
    if deployed:
        raise precondition(
            f"The model {record.name} is deployed or being deployed at the following "
            f"endpoints: {sorted(set(deployed))}. Undeploy it first."
        )
    if record.name in self.deleting:
        raise precondition(f"Model {record.name} is being deleted.")
    return _delete(self, record.name, record.name, lambda: self.store.delete_model(record.name))


def delete_version(self: Registry, name: str) -> Operation:
    record = self.record(name)
    model = self.get(name)
    if naming.split_version(name)[1] is None:
        raise invalid("deleteVersion needs a version: MODEL@VERSION_ID or MODEL@ALIAS.")
    if DEFAULT_ALIAS in model.version_aliases:
        raise precondition(
            f"Version {model.version_id} of {record.name} is the default version; "
            "make another version the default first."
        )
    if model.deployed_models:
        raise precondition(
            f"Version {model.version_id} of {record.name} is deployed at "
            f"{sorted(r.endpoint for r in model.deployed_models)}. Undeploy it first."
        )
    key = f"{record.name}@{model.version_id}"
    if key in self.deleting or record.name in self.deleting:
        raise precondition(f"Model {key} is being deleted.")

    def remove() -> None:
        if model in record.versions:
            record.versions.remove(model)
            self.store.save_model(record)

    return _delete(self, record.name, key, remove)


def _delete(self: Registry, name: str, key: str, remove: Callable[[], None]) -> Operation:
    """DeleteModel / DeleteModelVersion: long-running operations (at once, or after the modelled time)."""
    parent = name.split("/models/")[0]
    operation = operations.start(self.store, parent, "DeleteOperationMetadata")
    delay = self.fidelity.seconds("delete_model")
    if delay <= 0:
        remove()
        operations.succeed(self.store, operation, operations.EMPTY, {})
        return operation
    self.deleting.add(key)
    self.background.spawn(_finish_delete(self, operation, key, remove, delay), operation.name)
    return operation


async def _finish_delete(
    self: Registry, operation: Operation, key: str, remove: Callable[[], None], delay: float
) -> None:
    try:
        await asyncio.sleep(delay)
    except asyncio.CancelledError:
        if operation.name not in self.background.cancelled:
            raise
        operations.fail(self.store, operation, operations.cancelled())
        return
    finally:
        self.deleting.discard(key)
    remove()
    operations.succeed(self.store, operation, operations.EMPTY, {})
