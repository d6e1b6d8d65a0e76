"""The state bucket's records of deployments: deploy notes, ready times, serving args, teardowns
and pending uploads (state.py's module docstring names each object). StateStore inherits them."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from modeldrop.errors import ConflictError
from modeldrop.records import DeployNote, ServingArgs, Teardown
from modeldrop.storage import Storage

DEPLOYS = "deploys/"
READY = "ready/"
SERVING_ARGS = "serving-args/"  # the serving container reads the same names (serving/flags.py)
log = logging.getLogger(__name__)


class DeploymentRecords:
    """The deployment records of one state bucket (a StateStore is one)."""

    _storage: Storage
    _bucket: str

    # The gateway's view of deploys in flight -------------------------------------------------

    def note_deploy(self, endpoint: str, request_id: str, action: str, at: datetime) -> None:
        """A deploy or wake starts (or is queued) on `endpoint`: it is in flight until reported."""
        note = DeployNote(request_id=request_id, action=action, at=at)
        self._storage.write(
            self._bucket, f"{DEPLOYS}{endpoint}.json", note.model_dump_json().encode()
        )

    def deploy_note(self, endpoint: str) -> DeployNote | None:
        current = self._storage.read(self._bucket, f"{DEPLOYS}{endpoint}.json")
        if current is None:
            return None
        try:
            return DeployNote.model_validate_json(current.data)
        except ValidationError:
            log.error("gs://%s/%s%s.json is not a deploy note", self._bucket, DEPLOYS, endpoint)
            return None

    def end_deploy_note(self, endpoint: str, request_id: str, status: str, message: str) -> None:
        """The request's terminal status on its endpoint's note, if the note is still its own (a
        newer deploy's note is left alone; a lost race with one leaves that one too)."""
        name = f"{DEPLOYS}{endpoint}.json"
        current = self._storage.read(self._bucket, name)
        if current is None:
            return
        try:
            note = DeployNote.model_validate_json(current.data)
        except ValidationError:
            return
        if note.request_id != request_id or note.status is not None:
            return
        ended = note.model_copy(update={"status": status, "message": message[:1000]})
        try:
            self._storage.write(
                self._bucket,
                name,
                ended.model_dump_json().encode(),
                if_generation_match=current.generation,
            )
        except ConflictError:
            pass

    # Deploys ended ----------------------------------------------------------------------------

    def remember_ready(
        self,
        endpoint: str,
        deployed_model_id: str,
        at: datetime,
        placements: list[dict[str, Any]] | None = None,
    ) -> None:
        """When the sweep saw a deploy end: the deploy grace and the idle TTL run from here.
        The body keeps the deploy's placements, the one that served first, for its `wake`."""
        self._storage.write(
            self._bucket,
            f"{READY}{endpoint}/{deployed_model_id}.json",
            json.dumps({"placements": placements} if placements else {}).encode(),
            metadata={"ready-at": at.isoformat()},
        )

    def ready_placements(self, endpoint: str, deployed_model_id: str) -> list[dict[str, Any]]:
        """The placements the deployment's deploy listed, the one that served first (or none)."""
        found = self._storage.read(self._bucket, f"{READY}{endpoint}/{deployed_model_id}.json")
        try:
            body = json.loads(found.data) if found is not None else {}
        except ValueError:
            return []
        listed = body.get("placements") if isinstance(body, dict) else None
        return [p for p in listed if isinstance(p, dict)] if isinstance(listed, list) else []

    def ready_times(self) -> dict[tuple[str, str], datetime]:
        """(endpoint, deployed model id) -> when its deploy ended, from one listing."""
        found = {}
        for obj in self._storage.list_objects(self._bucket, READY):
            endpoint, _, deployed = (
                obj.name.removeprefix(READY).removesuffix(".json").partition("/")
            )
            at = obj.metadata.get("ready-at")
            if endpoint and deployed and at:
                found[(endpoint, deployed)] = datetime.fromisoformat(at)
        return found

    def forget_ready(self, endpoint: str, deployed_model_id: str) -> None:
        self._storage.delete(self._bucket, f"{READY}{endpoint}/{deployed_model_id}.json")

    # Deployments' serving args ------------------------------------------------------------------

    def remember_serving_args(
        self, endpoint: str, deployed_model_id: str, record: ServingArgs
    ) -> None:
        """Written before the deploy starts: the container reads it when it starts (a rewrite by a
        redelivered command writes the same args, its deployed model id being the request's)."""
        self._storage.write(
            self._bucket,
            f"{SERVING_ARGS}{endpoint}/{deployed_model_id}.json",
            record.model_dump_json().encode(),
        )

    def serving_args(self, endpoint: str, deployed_model_id: str) -> ServingArgs | None:
        current = self._storage.read(
            self._bucket, f"{SERVING_ARGS}{endpoint}/{deployed_model_id}.json"
        )
        if current is None:
            return None
        try:
            return ServingArgs.model_validate_json(current.data)
        except ValidationError:
            log.error(
                "gs://%s/%s%s/%s.json is not a serving args record",
                self._bucket,
                SERVING_ARGS,
                endpoint,
                deployed_model_id,
            )
            return None

    def forget_serving_args(self, endpoint: str, deployed_model_id: str) -> None:
        self._storage.delete(self._bucket, f"{SERVING_ARGS}{endpoint}/{deployed_model_id}.json")

    # Teardowns --------------------------------------------------------------------------------

    def remember_teardown(self, teardown: Teardown) -> None:
        self._storage.write(
            self._bucket, f"teardowns/{teardown.endpoint}.json", teardown.model_dump_json().encode()
        )

    def teardown(self, endpoint: str) -> Teardown | None:
        current = self._storage.read(self._bucket, f"teardowns/{endpoint}.json")
        return None if current is None else Teardown.model_validate_json(current.data)

    def forget_teardown(self, endpoint: str) -> None:
        self._storage.delete(self._bucket, f"teardowns/{endpoint}.json")

    # Pending uploads --------------------------------------------------------------------------

    def mark_pending(self, bucket: str, model: str, version: str, now: datetime) -> None:
        """Note an incomplete folder once (the first event that finds it so); later ones change nothing."""
        try:
            self._storage.write(
                self._bucket,
                f"uploads/{model}/{version}.json",
                b"{}",
                if_generation_match=0,
                metadata={"bucket": bucket, "since": now.isoformat()},
            )
        except ConflictError:
            pass

    def pending_uploads(self) -> list[tuple[str, str, str]]:
        """(bucket, model, version) of every folder noted as incomplete, from the listing alone."""
        found = []
        for obj in self._storage.list_objects(self._bucket, "uploads/"):
            model, _, version = (
                obj.name.removeprefix("uploads/").removesuffix(".json").partition("/")
            )
            bucket = obj.metadata.get("bucket")
            if bucket and model and version:
                found.append((bucket, model, version))
        return found

    def clear_pending(self, model: str, version: str) -> None:
        self._storage.delete(self._bucket, f"uploads/{model}/{version}.json")
