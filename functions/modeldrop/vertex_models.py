"""The Model Registry half of the Vertex adapter: versions, aliases and registration."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from modeldrop.errors import PermanentError, TransientError
from modeldrop.google_errors import translate
from modeldrop.resources import ModelSpec, ModelVersion
from modeldrop.vertex_client import PAGE_SIZE, VertexClient


class Registry(VertexClient):
    """Models and their versions through aiplatform_v1's ModelServiceClient over REST."""

    def model_version(self, model: str, alias: str) -> ModelVersion | None:
        from google.api_core.exceptions import NotFound

        try:
            found = self._models.get_model(name=f"{self._model_name(model)}@{alias}")
        except NotFound:
            return None
        except Exception as error:
            raise translate(error, f"reading model {model}@{alias}") from error
        return ModelVersion(
            self._model_name(model),
            str(found.version_id),
            tuple(found.version_aliases),
            dict(found.labels),
        )

    def list_managed_versions(self, label_filter: str) -> list[ModelVersion]:
        """Every version of every model matching `label_filter`, model by model."""
        try:
            versions = []
            models = self._models.list_models(
                request={"parent": self._location, "filter": label_filter, "page_size": PAGE_SIZE}
            )
            for model in models:
                for found in self._models.list_model_versions(request={"name": model.name}):
                    created = found.version_create_time
                    versions.append(
                        ModelVersion(
                            str(model.name),
                            str(found.version_id),
                            tuple(found.version_aliases),
                            dict(found.labels),
                            created
                            if isinstance(created, datetime) and created.year > 1970
                            else None,
                        )
                    )
            return versions
        except Exception as error:
            raise translate(error, "listing models") from error

    def register(self, spec: ModelSpec) -> str:
        from google.cloud import aiplatform_v1 as v1

        container = v1.ModelContainerSpec(
            image_uri=spec.image,
            args=spec.args,
            env=[v1.EnvVar(name=k, value=v) for k, v in spec.env.items()],
            ports=[v1.Port(container_port=spec.port)],
            predict_route=spec.predict_route,
            health_route=spec.health_route,
            deployment_timeout={"seconds": spec.deployment_timeout_s},
            shared_memory_size_mb=spec.shared_memory_size_mb,
            startup_probe=_probe(spec.health_route, spec.port, spec.startup_probe),
            health_probe=_probe(spec.health_route, spec.port, spec.health_probe),
        )
        model = v1.Model(
            display_name=spec.model,
            description=spec.description,
            labels=spec.labels,
            version_aliases=list(spec.aliases),
            version_description=f"models/{spec.model}/{spec.version}/",
            container_spec=container,
        )
        request = v1.UploadModelRequest(parent=self._location, model=model)
        if self._exists(spec.model):
            request.parent_model = self._model_name(spec.model)
        else:
            request.model_id = spec.model
        try:
            return str(self._models.upload_model(request=request).operation.name)
        except Exception as error:
            raise translate(error, f"registering {spec.model}/{spec.version}") from error

    def finish_register(self, operation: str) -> ModelVersion:
        from google.cloud import aiplatform_v1 as v1

        op = self.operation(operation)
        if not op.done:
            raise TransientError(f"registration {operation} is still running")
        if op.error:
            raise PermanentError(f"Vertex refused the model: {op.error}")
        response = v1.UploadModelResponse(op.details.get("response", {}))
        name = f"{response.model}@{response.model_version_id}"
        try:
            model = self._models.get_model(name=name)
        except Exception as error:
            # A 429/500/503 reading the new version back is Vertex's to retry, like any other call:
            # untranslated it was "unexpected" and the upload waited for the sweep.
            raise translate(error, f"reading registered version {name}") from error
        return ModelVersion(
            str(response.model).split("@")[0],
            str(response.model_version_id),
            tuple(model.version_aliases),
            dict(model.labels),
        )

    def _exists(self, model: str) -> bool:
        from google.api_core.exceptions import NotFound

        try:
            self._models.get_model(name=self._model_name(model))
        except NotFound:
            return False
        except Exception as error:
            raise translate(error, f"reading model {model}") from error
        return True


def _probe(path: str, port: int, settings: dict[str, int]) -> Any:
    from google.cloud import aiplatform_v1 as v1

    return v1.Probe(http_get=v1.Probe.HttpGetAction(path=path, port=port), **settings)
