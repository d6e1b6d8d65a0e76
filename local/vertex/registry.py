"""The Model Registry: models with versions, aliases and a default version."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from local.vertex import deletion, listing, naming, operations, probes
from local.vertex.background import Background
from local.vertex.errors import ApiError, invalid, not_found, precondition
from local.vertex.fidelity import Fidelity
from local.vertex.resources import Model, Operation, UploadModelRequest
from local.vertex.store import ModelVersions, Store

DEFAULT_ALIAS = "default"
UPDATABLE = {"displayName", "description", "labels", "versionDescription"}
# UpdateModelRequest: one request updates the model or one version, never both.
MODEL_FIELDS = {"displayName", "description", "labels"}
VERSION_FIELDS = {"versionDescription", "labels"}


def _etag(model: Model) -> str:
    return hashlib.sha1(model.model_dump_json().encode()).hexdigest()[:16]


class Registry:
    """Models in `store`, addressed as `projects/P/locations/L/models/M[@version|@alias]`."""

    def __init__(
        self, store: Store, fidelity: Fidelity | None = None, background: Background | None = None
    ) -> None:
        self.store = store
        self.fidelity = fidelity or Fidelity()
        self.background = background or Background()
        # Models whose first upload operation has not ended (faithful: not visible yet).
        self.uploading: set[str] = set()
        # Models (name) and versions (name@id) whose delete operation runs: still readable.
        self.deleting: set[str] = set()

    def _check_upload(self, model: Model) -> None:
        strict = self.fidelity.strict_requests
        naming.check_display_name(model.display_name, "model", strict)
        if model.container_spec is not None and not model.container_spec.image_uri:
            raise invalid("model.container_spec.image_uri is required.")
        if self.fidelity.strict_probes and model.container_spec is not None:
            extra = model.container_spec.model_extra or {}
            equal = self.fidelity.probe_equal == "accept"
            for key in ("startupProbe", "healthProbe"):
                probes.check(extra.get(key), f"model.container_spec.{key}", equal)
        naming.check_aliases(model.version_aliases)
        naming.check_labels(model.labels, self.fidelity.label_max)

    def upload(self, parent: str, request: UploadModelRequest) -> Operation:
        """Register a new model or a new version of `parentModel` (done at once, or after the modelled time)."""
        model = request.model
        self._check_upload(model)
        if DEFAULT_ALIAS in model.version_aliases and request.parent_model is None:
            model.version_aliases.remove(DEFAULT_ALIAS)
        if request.parent_model:
            record = self.record(request.parent_model)
        else:
            if request.model_id:
                naming.check_model_id(request.model_id)
            model_id = request.model_id or self.store.new_id()
            name = f"{parent}/models/{model_id}"
            if name in self.store.models or name in self.uploading:
                raise ApiError("ALREADY_EXISTS", f'Model "{name}" already exists.')
            record = ModelVersions(name=name, versions=[])
        stamp = operations.now()
        version = Model.model_validate(
            {
                **model.wire(),
                "name": record.name,
                "versionId": str(record.next_version),
                "versionCreateTime": stamp,
                "versionUpdateTime": stamp,
                "createTime": record.versions[0].create_time if record.versions else stamp,
                "updateTime": stamp,
                "deployedModels": [],
            }
        )
        if not version.supported_deployment_resources_types and version.container_spec:
            # The high-level SDK drops machine specs from deploys of models without this.
            version.supported_deployment_resources_types = ["DEDICATED_RESOURCES"]
        version.etag = _etag(version)
        record.next_version += 1
        operation = operations.start(self.store, record.name, "UploadModelOperationMetadata")
        delay = self.fidelity.seconds("upload_model")
        if delay <= 0 or not self.fidelity.created_when_done:
            self._add_version(record, version)
        if delay <= 0:
            self._finish_upload(operation, record, version)
            return operation
        if self.fidelity.created_when_done and not record.versions:
            self.uploading.add(record.name)
        self.background.spawn(self._later(operation, record, version, delay), operation.name)
        return operation

    def _add_version(self, record: ModelVersions, version: Model) -> None:
        for other in record.versions:
            # An alias names one version: giving it to the new version takes it from the old.
            other.version_aliases = [
                a for a in other.version_aliases if a not in version.version_aliases
            ]
        if not record.versions:
            version.version_aliases = [DEFAULT_ALIAS, *version.version_aliases]
        if version not in record.versions:
            record.versions.append(version)
        self.store.save_model(record)

    async def _later(
        self, operation: Operation, record: ModelVersions, version: Model, delay: float
    ) -> None:
        try:
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            self.uploading.discard(record.name)
            if operation.name not in self.background.cancelled:
                raise
            operations.fail(self.store, operation, operations.cancelled())
            return
        self.uploading.discard(record.name)
        # A model deleted meanwhile gets its record back with this one version.
        current = self.store.models.get(record.name, record)
        self._add_version(current, version)
        self._finish_upload(operation, current, version)

    def _finish_upload(self, operation: Operation, record: ModelVersions, version: Model) -> None:
        operations.succeed(
            self.store,
            operation,
            "UploadModelResponse",
            {"model": record.name, "modelVersionId": version.version_id},
        )

    def record(self, name: str) -> ModelVersions:
        base, _ = naming.split_version(name)
        record = self.store.models.get(base)
        if record is None:
            raise not_found("Model", base)
        return record

    def get(self, name: str) -> Model:
        """The version `name` points at: `@id`, `@alias`, or the default version."""
        record = self.record(name)
        _, version = naming.split_version(name)
        wanted = version or DEFAULT_ALIAS
        for model in record.versions:
            if model.version_id == wanted or wanted in model.version_aliases:
                return model
        raise not_found("Model", name)

    def view(self, model: Model) -> Model:
        """A version as the API returns it: with the model's labels merged in (faithful)."""
        if not self.fidelity.merged_labels or model.name not in self.store.models:
            return model
        record = self.store.models[model.name]
        if not record.labels:
            return model
        merged = (
            {**record.labels, **model.labels}
            if self.fidelity.label_winner == "version"
            else {**model.labels, **record.labels}
        )
        return model.model_copy(update={"labels": merged})

    def find(self, parent: str, filter_text: str) -> list[Model]:
        terms = listing.parse_filter(filter_text)
        defaults = [
            self.view(self.get(record.name))
            for name, record in self.store.models.items()
            if name.startswith(parent + "/")
        ]
        return listing.select(defaults, terms, lambda m: (m.labels, m.display_name))

    def versions(self, name: str, filter_text: str) -> list[Model]:
        terms = listing.parse_filter(filter_text)
        versions = [self.view(v) for v in self.record(name).versions]
        return listing.select(versions, terms, lambda m: (m.labels, m.display_name))

    def update(self, name: str, patch: dict[str, Any], paths: list[str]) -> Model:
        if not paths:
            raise invalid("update_mask is required: name the fields to update.")
        unknown = [p for p in paths if p not in UPDATABLE]
        if unknown:
            raise invalid(f"Fields {unknown} cannot be updated; updatable: {sorted(UPDATABLE)}.")
        if self.fidelity.merged_labels:
            return self._update_split(name, patch, paths)
        model = self.get(name)
        changes = Model.model_validate({"displayName": model.display_name, **patch})
        for path in paths:
            attribute = {"displayName": "display_name", "versionDescription": "version_description"}
            setattr(model, attribute.get(path, path), getattr(changes, attribute.get(path, path)))
        naming.check_labels(model.labels)
        model.update_time = model.version_update_time = operations.now()
        model.etag = _etag(model)
        self.store.save_model(self.record(name))
        return model

    def _update_split(self, name: str, patch: dict[str, Any], paths: list[str]) -> Model:
        """UpdateModelRequest as documented: `M` (or `M@-`) updates the model, `M@v` one version."""
        record = self.record(name)
        _, version = naming.split_version(name)
        model_level = version in (None, "-")
        allowed = MODEL_FIELDS if model_level else VERSION_FIELDS
        wrong = [p for p in paths if p not in allowed]
        if wrong:
            scope = "the model" if model_level else f"version {version}"
            raise precondition(
                f"Fields {wrong} cannot be updated on {scope} ({name}): model fields are "
                f"{sorted(MODEL_FIELDS)} (name without @), version fields {sorted(VERSION_FIELDS)} "
                "(name@version); update them in separate requests."
            )
        changes = Model.model_validate({"displayName": "x", **patch})
        stamp = operations.now()
        if "labels" in paths:
            naming.check_labels(changes.labels, self.fidelity.label_max)
        if model_level:
            if "labels" in paths:
                record.labels = dict(changes.labels)
            for model in record.versions:
                if "displayName" in paths:
                    naming.check_display_name(
                        changes.display_name, "model", self.fidelity.strict_requests
                    )
                    model.display_name = changes.display_name
                if "description" in paths:
                    model.description = changes.description
                model.update_time = stamp
                model.etag = _etag(model)
            target = self.get(record.name)
        else:
            target = self.get(name if version != "-" else record.name)
            if "labels" in paths:
                target.labels = dict(changes.labels)
            if "versionDescription" in paths:
                target.version_description = changes.version_description
            target.update_time = target.version_update_time = stamp
            target.etag = _etag(target)
        self.store.save_model(record)
        return self.view(target)

    def merge_aliases(self, name: str, changes: list[str]) -> Model:
        """Add aliases to one version (taking them from others); `-alias` removes one."""
        record = self.record(name)
        model = self.get(name)
        removed = [c[1:] for c in changes if c.startswith("-")]
        added = [c for c in changes if not c.startswith("-")]
        naming.check_aliases(added + removed)
        if DEFAULT_ALIAS in removed:
            raise invalid("The default alias cannot be removed; give it to another version.")
        for other in record.versions:
            other.version_aliases = [a for a in other.version_aliases if a not in added]
        model.version_aliases = [a for a in model.version_aliases if a not in removed] + added
        model.version_update_time = model.update_time = operations.now()
        model.etag = _etag(model)
        self.store.save_model(record)
        return model

    def check_not_deleting(self, model: Model) -> None:
        deletion.check_not_deleting(self, model)

    def delete(self, name: str) -> Operation:
        """Delete every version; refused while any of them is deployed."""
        return deletion.delete_model(self, name)

    def delete_version(self, name: str) -> Operation:
        return deletion.delete_version(self, name)
