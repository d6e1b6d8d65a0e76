"""What Vertex can't hold, as small objects in the state bucket written with generation preconditions.

- `leases/<endpoint>.json`: who may act on an endpoint until when. Released by a conditional
  *write* (holder cleared), never a conditional delete: not every GCS implementation enforces
  preconditions on deletes, and the lease's correctness must not rest on one.
- `requests/<request_id>.json`: a request's progress (started -> recorded -> done) and, once done,
  its one terminal result, so a redelivered command or upload changes nothing once it is decided.
- `outbox/<request_id>.json`: a terminal result on its way out: written before the request's record
  takes it and deleted once it is published, so a crash in between is repaired by the sweep.
- `operations/<endpoint>/<request_id>.<part>.json`: an in-flight Vertex operation the sweep follows,
  written first as an intent (no operation name yet) so a function that dies between starting the
  operation and recording it leaves a trace the sweep repairs from what Vertex reports.
- `deploys/<endpoint>.json`: the latest deploy or wake accepted or queued on the endpoint, and its
  terminal status once reported: what the gateway reads to hold requests for a deploy it did not
  start (it may read objects it names, never list operations/ or queue/).
- `adapter-index/<model>.json`: the names of a model's registered adapters (adapters.py), for the
  gateway's /v1/models.
- `queue/<endpoint>/...`: commands that arrived while their endpoint was busy (command_queue.py).
- `ready/<endpoint>/<deployed model id>.json`: when the sweep saw the deploy end (its metadata):
  the idle TTL and the deploy grace run from then.
- `serving-args/<endpoint>/<deployed model id>.json`: a deployment's own serving args, written
  before it is deployed and read by its container at start; removed once it is undeployed (or its
  deploy failed). Vertex holds containerSpec per Model, not per deployment.
- `teardowns/<endpoint>.json`: what the sweep undeployed, so `wake` can bring it back.
- `uploads/<model>/<version>.json`: a version folder that is not complete yet, so the sweep judges it
  again when no further file arrives (an abandoned upload is rejected, never left waiting).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from modeldrop.command_queue import CommandQueue
from modeldrop.deployment_records import DeploymentRecords
from modeldrop.errors import ConflictError
from modeldrop.records import (
    DEPLOY_ACTIONS,
    Lease,
    OperationRecord,
    RequestRecord,
    RequestState,
)
from modeldrop.results import Result
from modeldrop.storage import Storage

LEASE_TTL = timedelta(minutes=10)
OUTBOX = "outbox/"
log = logging.getLogger(__name__)


class StateStore(DeploymentRecords):
    """The state bucket, through the Storage adapter: leases, requests, the outbox, operations, and
    (DeploymentRecords) what is kept about deployments."""

    def __init__(self, storage: Storage, bucket: str) -> None:
        self._storage = storage
        self._bucket = bucket
        self.queue = CommandQueue(storage, bucket)

    # Leases -----------------------------------------------------------------------------------

    def acquire(self, endpoint: str, holder: str, now: datetime) -> int:
        """Take the endpoint's lease (free, expired, or already ours); ConflictError if someone holds it."""
        name = f"leases/{endpoint}.json"
        current = self._storage.read(self._bucket, name)
        generation = 0
        if current is not None:
            lease = Lease.model_validate_json(current.data)
            held = lease.holder not in (None, holder)
            if held and lease.expires_at is not None and lease.expires_at > now:
                raise ConflictError(
                    f"endpoint {endpoint} is busy with {lease.holder} until {lease.expires_at:%H:%M:%S}"
                )
            generation = current.generation
        return self._write_lease(name, Lease(holder=holder, expires_at=now + LEASE_TTL), generation)

    def release(self, endpoint: str, generation: int) -> None:
        """Clear the lease if it is still the one we wrote; a lost race leaves the newer holder alone."""
        try:
            self._write_lease(f"leases/{endpoint}.json", Lease(), generation)
        except ConflictError:
            pass

    @contextmanager
    def lease(self, endpoint: str, holder: str, now: datetime) -> Iterator[None]:
        generation = self.acquire(endpoint, holder, now)
        try:
            yield
        finally:
            self.release(endpoint, generation)

    def stale_leases(self, now: datetime) -> list[str]:
        """Endpoints whose lease expired with a holder still named (a crashed function's).

        Judged from the listing alone (holder and expiry ride in object metadata): one list call
        per page, not one read per endpoint.
        """
        stale = []
        for obj in self._storage.list_objects(self._bucket, "leases/"):
            holder, expires = obj.metadata.get("holder"), obj.metadata.get("expires-at")
            if holder and expires and datetime.fromisoformat(expires) <= now:
                stale.append(obj.name.removeprefix("leases/").removesuffix(".json"))
        return stale

    def _write_lease(self, name: str, lease: Lease, generation: int) -> int:
        metadata = {}
        if lease.holder and lease.expires_at is not None:
            metadata = {"holder": lease.holder, "expires-at": lease.expires_at.isoformat()}
        body = lease.model_dump_json().encode()
        return self._storage.write(
            self._bucket, name, body, if_generation_match=generation, metadata=metadata
        )

    def clear_stale_lease(self, endpoint: str, now: datetime) -> bool:
        name = f"leases/{endpoint}.json"
        current = self._storage.read(self._bucket, name)
        if current is None:
            return False
        lease = Lease.model_validate_json(current.data)
        if not lease.holder or lease.expires_at is None or lease.expires_at > now:
            return False
        self.release(endpoint, current.generation)
        return True

    # Requests ---------------------------------------------------------------------------------

    def request(self, request_id: str) -> RequestRecord | None:
        found = self.request_versioned(request_id)
        return None if found is None else found[0]

    def request_versioned(self, request_id: str) -> tuple[RequestRecord, int] | None:
        """The request's record and its generation, for a conditional update."""
        current = self._storage.read(self._bucket, f"requests/{request_id}.json")
        if current is None:
            return None
        return RequestRecord.model_validate_json(current.data), current.generation

    def claim(self, record: RequestRecord) -> RequestRecord | None:
        """Create the request's record; None if it was new, else the record already there."""
        try:
            self._storage.write(
                self._bucket,
                f"requests/{record.request_id}.json",
                record.model_dump_json().encode(),
                if_generation_match=0,
            )
            return None
        except ConflictError:
            return self.request(record.request_id)

    def update_request(self, record: RequestRecord, if_generation_match: int | None = None) -> None:
        """Write the record; with `if_generation_match`, ConflictError if it changed since read."""
        self._storage.write(
            self._bucket,
            f"requests/{record.request_id}.json",
            record.model_dump_json().encode(),
            if_generation_match=if_generation_match,
        )

    def advance_request(self, record: RequestRecord, **update: Any) -> None:
        """Move a request on (queued, recorded), unless its terminal result was decided meanwhile:
        a done record is never written over (the reporting sweep needs no lease)."""
        for _ in range(5):
            found = self.request_versioned(record.request_id)
            if found is not None and found[0].state is RequestState.DONE:
                return
            current, generation = found if found is not None else (record, 0)
            try:
                self.update_request(current.model_copy(update=update), generation)
                return
            except ConflictError:
                continue
        raise ConflictError(f"request {record.request_id}: its record kept changing")

    # The results outbox -----------------------------------------------------------------------

    def stage_result(self, result: Result) -> None:
        """Put a terminal result in the outbox before it is decided and published (reporting.py)."""
        self._storage.write(
            self._bucket,
            f"{OUTBOX}{result.request_id}.json",
            result.model_dump_json().encode(),
            metadata={"staged-at": result.at.isoformat()},
        )

    def staged_results(self, before: datetime) -> list[Result]:
        """Results staged before `before` and not yet known to be published; a bad one is skipped."""
        found = []
        for obj in self._storage.list_objects(self._bucket, OUTBOX):
            staged = obj.metadata.get("staged-at")
            if staged and datetime.fromisoformat(staged) > before:
                continue  # its writer is most likely still at work: leave it a moment
            current = self._storage.read(self._bucket, obj.name)
            if current is None:
                continue
            try:
                found.append(Result.model_validate_json(current.data))
            except ValidationError:
                log.error("gs://%s/%s is not a result; skipped", self._bucket, obj.name)
        return found

    def clear_staged(self, request_id: str) -> None:
        self._storage.delete(self._bucket, f"{OUTBOX}{request_id}.json")

    # Operations -------------------------------------------------------------------------------

    def record_operation(self, record: OperationRecord) -> None:
        self._storage.write(self._bucket, record.key, record.model_dump_json().encode())
        if record.action in DEPLOY_ACTIONS and record.operation is None and not record.deferred:
            # A step about to start (its intent): once per step, not again with its operation name.
            self.note_deploy(record.endpoint, record.request_id, record.action, record.started_at)

    def operations(self, endpoint: str | None = None) -> list[OperationRecord]:
        """Every recorded operation (or intent), or those on one endpoint."""
        prefix = "operations/" if endpoint is None else f"operations/{endpoint}/"
        found = []
        for obj in self._storage.list_objects(self._bucket, prefix):
            current = self._storage.read(self._bucket, obj.name)
            if current is None:
                continue
            try:
                found.append(OperationRecord.model_validate_json(current.data))
            except ValidationError:
                # Not written by modeldrop (or torn): one bad record must not stop the sweep.
                log.error(
                    "state object gs://%s/%s is not an operation record; skipped",
                    self._bucket,
                    obj.name,
                )
        return found

    def forget_operation(self, record: OperationRecord) -> None:
        self._storage.delete(self._bucket, record.key)
