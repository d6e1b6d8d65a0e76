"""The state bucket over fake-gcs-server: leases and request claims hold under races via generation preconditions."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from support.names import PROJECT

from modeldrop.errors import ConflictError
from modeldrop.records import OperationRecord, RequestRecord, RequestState
from modeldrop.state import LEASE_TTL, StateStore
from modeldrop.storage import GcsStorage

pytestmark = pytest.mark.stack
_ids = itertools.count(1)
NOW = datetime.now(UTC)


def make_store(gcs_host: str) -> StateStore:
    from google.cloud import storage

    bucket = f"state-test-{next(_ids)}"
    storage.Client(project=PROJECT).create_bucket(bucket)
    return StateStore(GcsStorage(PROJECT), bucket)


def test_a_held_lease_refuses_another_holder_until_released(gcs_host: str) -> None:
    """Two holders can't hold one endpoint; releasing (a conditional write) frees it."""
    store = make_store(gcs_host)
    generation = store.acquire("e", "first", NOW)
    with pytest.raises(ConflictError, match="busy with first"):
        store.acquire("e", "second", NOW)
    store.acquire("e", "first", NOW)  # the holder itself may take it again (a retry)
    store.release("e", store.acquire("e", "first", NOW))
    store.acquire("e", "second", NOW)
    assert generation > 0


def test_a_stale_release_does_not_free_a_newer_holder(gcs_host: str) -> None:
    """Releasing with an old generation (the lease was taken over) leaves the new holder's lease in place."""
    store = make_store(gcs_host)
    old = store.acquire("e", "first", NOW)
    store.acquire("e", "second", NOW + LEASE_TTL + timedelta(seconds=1))  # first's lease expired
    store.release("e", old)
    with pytest.raises(ConflictError, match="busy with second"):
        store.acquire("e", "third", NOW + LEASE_TTL + timedelta(seconds=2))


def test_expired_leases_are_found_and_cleared(gcs_host: str) -> None:
    """A lease past its expiry with a holder still named is stale; clearing it lets others in."""
    store = make_store(gcs_host)
    store.acquire("e", "crashed", NOW - LEASE_TTL * 2)
    assert store.stale_leases(NOW) == ["e"]
    assert store.clear_stale_lease("e", NOW)
    assert store.stale_leases(NOW) == []


def test_a_request_is_claimed_once(gcs_host: str) -> None:
    """The first claim wins; a second claim of the same request_id returns the record already there."""
    store = make_store(gcs_host)
    record = RequestRecord(
        request_id="r1", kind="command", action="deploy", state=RequestState.STARTED, at=NOW
    )
    assert store.claim(record) is None
    store.update_request(record.model_copy(update={"state": RequestState.DONE}))
    again = store.claim(record)
    assert again is not None and again.state is RequestState.DONE


def test_operations_are_listed_per_endpoint_and_forgotten(gcs_host: str) -> None:
    """Recorded operations list by endpoint; forgetting one removes it."""
    store = make_store(gcs_host)
    first = OperationRecord(
        operation="op/1", request_id="r1", action="deploy", endpoint="a", started_at=NOW
    )
    store.record_operation(first)
    store.record_operation(
        OperationRecord(
            operation="op/2", request_id="r2", action="deploy", endpoint="b", started_at=NOW
        )
    )
    assert [r.request_id for r in store.operations("a")] == ["r1"]
    assert len(store.operations()) == 2
    store.forget_operation(first)
    assert [r.request_id for r in store.operations()] == ["r2"]


def test_a_deploy_step_notes_its_endpoint_and_only_its_own_end_closes_the_note(
    gcs_host: str,
) -> None:
    """Starting a deploy writes deploys/<endpoint>.json; a newer deploy's note is not closed by an
    older request's end; its own end records its status and reason."""
    store = make_store(gcs_host)
    intent = OperationRecord(request_id="r1", action="deploy", endpoint="a", started_at=NOW)
    store.record_operation(intent)
    store.record_operation(intent.model_copy(update={"operation": "op/1"}))
    note = store.deploy_note("a")
    assert note is not None and (note.request_id, note.status) == ("r1", None)
    store.note_deploy("a", "r2", "wake", NOW)
    store.end_deploy_note("a", "r1", "ready", "")
    assert store.deploy_note("a").status is None  # type: ignore[union-attr]
    store.end_deploy_note("a", "r2", "failed", "no capacity")
    ended = store.deploy_note("a")
    assert ended is not None and (ended.status, ended.message) == ("failed", "no capacity")
    undeploy = OperationRecord(request_id="r3", action="undeploy", endpoint="b", started_at=NOW)
    store.record_operation(undeploy)
    assert store.deploy_note("b") is None
