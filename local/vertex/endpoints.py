"""Endpoints: create, read, list, update (labels, traffic split, with etag) and delete."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from local.vertex import dedicated, listing, naming, operations, traffic
from local.vertex.background import Background
from local.vertex.errors import ApiError, invalid, not_found, precondition
from local.vertex.fidelity import Fidelity
from local.vertex.resources import Endpoint, Operation
from local.vertex.store import Store

UPDATABLE = {"displayName", "description", "labels", "trafficSplit"}


def touch(endpoint: Endpoint) -> None:
    """Stamp a change: new update time and a new etag, so stale read-modify-writes are refused."""
    endpoint.update_time = operations.now()
    endpoint.etag = None
    endpoint.etag = hashlib.sha1(endpoint.model_dump_json().encode()).hexdigest()[:16]


class Endpoints:
    def __init__(
        self, store: Store, fidelity: Fidelity | None = None, background: Background | None = None
    ) -> None:
        self.store = store
        self.fidelity = fidelity or Fidelity()
        self.background = background or Background()
        # Deploys under way, per endpoint name: they block deleting the endpoint.
        self.pending: dict[str, set[str]] = {}
        # Endpoints whose create operation has not ended (faithful: not visible yet).
        self.creating: dict[str, Endpoint] = {}
        # The deploy, undeploy, mutate or delete running on each endpoint, by operation name.
        self.busy: dict[str, str] = {}

    def claim(self, name: str, operation: str) -> None:
        """Record `operation` as the one running on `name`; refused while another runs (if the rule says so)."""
        current = self.busy.get(name)
        if current and self.fidelity.concurrent_ops == "refuse":
            raise precondition(
                f"The endpoint {name} has an operation in progress: {current}. "
                "Wait for it to finish, then retry."
            )
        self.busy[name] = operation

    def release(self, name: str, operation: str) -> None:
        if self.busy.get(name) == operation:
            del self.busy[name]

    def create(self, parent: str, endpoint_id: str | None, body: Endpoint) -> Operation:
        strict = self.fidelity.strict_requests
        naming.check_display_name(body.display_name, "endpoint", strict)
        naming.check_labels(body.labels, self.fidelity.label_max)
        if body.deployed_models or body.traffic_split:
            raise invalid("A new endpoint has no deployed models: deploy them with :deployModel.")
        if endpoint_id:
            naming.check_endpoint_id(endpoint_id, strict)
        endpoint_id = endpoint_id or self.store.new_id()
        name = f"{parent}/endpoints/{endpoint_id}"
        if name in self.store.endpoints or name in self.creating:
            raise ApiError("ALREADY_EXISTS", f'Endpoint "{name}" already exists.')
        stamp = operations.now()
        endpoint = Endpoint.model_validate(
            {**body.wire(), "name": name, "createTime": stamp, "deployedModels": []}
        )
        # Output only: a client's value is replaced; filled at create (assumed: the SDK re-reads
        # an endpoint whose DNS is still empty, so callers must not count on it being there).
        endpoint.dedicated_endpoint_dns = (
            dedicated.dns(name) if endpoint.dedicated_endpoint_enabled else None
        )
        touch(endpoint)
        operation = operations.start(self.store, name, "CreateEndpointOperationMetadata")
        delay = self.fidelity.seconds("create_endpoint")
        if delay <= 0:
            self.store.save_endpoint(endpoint)
            operations.succeed(self.store, operation, "Endpoint", endpoint.wire())
            return operation
        if self.fidelity.created_when_done:
            self.creating[name] = endpoint
        else:
            self.store.save_endpoint(endpoint)
        self.background.spawn(self._finish_create(operation, endpoint, delay), operation.name)
        return operation

    async def _finish_create(self, operation: Operation, endpoint: Endpoint, delay: float) -> None:
        name = endpoint.name or ""
        try:
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            self.creating.pop(name, None)
            if operation.name not in self.background.cancelled:
                raise
            self.store.delete_endpoint(name)
            operations.fail(self.store, operation, operations.cancelled())
            return
        self.creating.pop(name, None)
        self.store.save_endpoint(endpoint)
        operations.succeed(self.store, operation, "Endpoint", endpoint.wire())

    def get(self, name: str) -> Endpoint:
        endpoint = self.store.endpoints.get(name)
        if endpoint is None:
            raise not_found("Endpoint", name)
        return endpoint

    def find(self, parent: str, filter_text: str) -> list[Endpoint]:
        terms = listing.parse_filter(filter_text)
        mine = [e for n, e in self.store.endpoints.items() if n.startswith(parent + "/")]
        return listing.select(mine, terms, lambda e: (e.labels, e.display_name))

    def update(self, name: str, patch: dict[str, Any], paths: list[str]) -> Endpoint:
        endpoint = self.get(name)
        if not paths:
            raise invalid("update_mask is required: name the fields to update.")
        unknown = [p for p in paths if p not in UPDATABLE]
        if unknown:
            raise invalid(f"Fields {unknown} cannot be updated; updatable: {sorted(UPDATABLE)}.")
        etag = patch.get("etag")
        if etag and etag != endpoint.etag:
            raise ApiError(
                "ABORTED",
                f"The etag {etag!r} does not match the endpoint's current etag: it changed since "
                "it was read. Read it again and retry.",
            )
        changes = Endpoint.model_validate({"displayName": endpoint.display_name, **patch})
        if "trafficSplit" in paths:
            traffic.check_patch(
                changes.traffic_split, [m.id or "" for m in endpoint.deployed_models]
            )
            endpoint.traffic_split = dict(changes.traffic_split)
        if "labels" in paths:
            naming.check_labels(changes.labels, self.fidelity.label_max)
            endpoint.labels = dict(changes.labels)
        if "displayName" in paths:
            naming.check_display_name(
                changes.display_name, "endpoint", self.fidelity.strict_requests
            )
            endpoint.display_name = changes.display_name
        if "description" in paths:
            endpoint.description = changes.description
        touch(endpoint)
        self.store.save_endpoint(endpoint)
        return endpoint

    def delete(self, name: str) -> Operation:
        endpoint = self.get(name)
        if endpoint.deployed_models or self.pending.get(name):
            ids = [m.id for m in endpoint.deployed_models] + sorted(self.pending.get(name, ()))
            raise precondition(
                f"Endpoint {name} has deployed models {ids}; undeploy them before deleting it."
            )
        parent = name.split("/endpoints/")[0]
        operation = operations.start(self.store, parent, "DeleteOperationMetadata")
        delay = self.fidelity.seconds("delete_endpoint")
        if delay <= 0:
            self.store.delete_endpoint(name)
            operations.succeed(self.store, operation, operations.EMPTY, {})
            return operation
        # The endpoint is listed until its delete operation ends; nothing else may start on it.
        self.claim(name, operation.name)
        self.background.spawn(self._finish_delete(operation, name, delay), operation.name)
        return operation

    async def _finish_delete(self, operation: Operation, name: str, delay: float) -> None:
        try:
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            self.release(name, operation.name)
            if operation.name not in self.background.cancelled:
                raise
            operations.fail(self.store, operation, operations.cancelled())
            return
        self.release(name, operation.name)
        self.store.delete_endpoint(name)
        operations.succeed(self.store, operation, operations.EMPTY, {})
