"""Long-running operations: named under their resource, finished with a response or an error."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from local.vertex import versions
from local.vertex.errors import ApiError
from local.vertex.resources import Operation
from local.vertex.store import Store

TYPE_PREFIX = versions.type_prefix(versions.V1)


def now() -> str:
    """An RFC 3339 UTC timestamp, as Google APIs write them."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def start(store: Store, parent: str, metadata_type: str) -> Operation:
    """A new, unfinished operation under `parent`, typed in the version the request came in on."""
    stamp = now()
    operation = Operation(
        name=f"{parent}/operations/{store.new_id()}",
        metadata={
            "@type": versions.type_prefix() + metadata_type,
            "genericMetadata": {"createTime": stamp, "updateTime": stamp},
        },
    )
    store.save_operation(operation)
    return operation


def stage(store: Store, operation: Operation, deployment_stage: str) -> None:
    """Record how far a deploy got (DeployModelOperationMetadata.deploymentStage)."""
    generic = dict(operation.metadata.get("genericMetadata", {}))
    generic["updateTime"] = now()
    operation.metadata = {
        **operation.metadata,
        "genericMetadata": generic,
        "deploymentStage": deployment_stage,
    }
    store.save_operation(operation)


def succeed(
    store: Store, operation: Operation, response_type: str, response: dict[str, Any]
) -> None:
    """Finish with `response` (a message of `response_type`, e.g. `Endpoint`)."""
    # The response is typed in the version of the operation's metadata (v1 or v1beta1).
    prefix = str(operation.metadata.get("@type", TYPE_PREFIX)).rpartition(".")[0] + "."
    full_type = response_type if "/" in response_type else prefix + response_type
    _finish(store, operation, response={"@type": full_type, **response})


def fail(store: Store, operation: Operation, error: ApiError) -> None:
    _finish(store, operation, error=error.rpc_status())


def _finish(
    store: Store,
    operation: Operation,
    response: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
) -> None:
    generic = dict(operation.metadata.get("genericMetadata", {}))
    generic["updateTime"] = now()
    operation.metadata = {**operation.metadata, "genericMetadata": generic}
    operation.done = True
    operation.response = response
    operation.error = error
    store.save_operation(operation)


EMPTY = "type.googleapis.com/google.protobuf.Empty"


def cancelled() -> ApiError:
    """How a cancelled operation ends (google.longrunning: an error with Code.CANCELLED, 1)."""
    return ApiError("CANCELLED", "Operation was cancelled.")
