"""Settings come from flags, MODELDROP_SERVING_* and AIP_* variables, once, and are checked at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.settings import Settings, SettingsError, Vertex


def test_vertex_variables_set_the_port_routes_and_model() -> None:
    """Every AIP_* variable Vertex sets is read; absent ones fall back to defaults."""
    env = {
        "AIP_HTTP_PORT": "7080",
        "AIP_HEALTH_ROUTE": "/v1/endpoints/1/deployedModels/2",
        "AIP_PREDICT_ROUTE": "/v1/endpoints/1/deployedModels/2:predict",
        "AIP_STORAGE_URI": "gs://bucket/models/gemma/v3",
        "AIP_MODE": "PREDICTION",
        "AIP_MODE_VERSION": "1.0.0",
        "AIP_FRAMEWORK": "CUSTOM_CONTAINER",
        "AIP_DEPLOYED_MODEL_ID": "2",
        "AIP_ENDPOINT_ID": "1",
        "AIP_PROJECT_NUMBER": "1234",
        "AIP_MACHINE_TYPE": "g2-standard-8",
        "AIP_ACCELERATOR_TYPE": "NVIDIA_L4",
        "AIP_MODEL_NAME": "projects/1234/locations/us-central1/models/9",
        "AIP_VERSION_NAME": "3",
    }
    settings = Settings.load([], env)
    assert settings.port == 7080
    assert settings.model == "gs://bucket/models/gemma/v3"
    assert settings.model_name == "gemma"
    assert settings.vertex.health_route == "/v1/endpoints/1/deployedModels/2"
    assert settings.vertex.machine_type == "g2-standard-8"
    assert settings.vertex.accelerator_type == "NVIDIA_L4"
    assert settings.vertex.project_number == "1234"
    defaults = Vertex.from_env({})
    assert (defaults.http_port, defaults.health_route, defaults.predict_route) == (
        8080,
        "/health",
        "/predict",
    )


def test_flags_win_over_environment_variables() -> None:
    """A flag overrides MODELDROP_SERVING_*, which overrides AIP_STORAGE_URI and the defaults."""
    env = {
        "AIP_STORAGE_URI": "gs://b/aip",
        "MODELDROP_SERVING_MODEL": "gs://b/env",
        "MODELDROP_SERVING_MAX_MODEL_LEN": "2048",
        "MODELDROP_SERVING_DTYPE": "float16",
        "MODELDROP_SERVING_TRUST_REMOTE_CODE": "true",
    }
    settings = Settings.load(["--model", "/models/gemma", "--max-model-len", "4096"], env)
    assert settings.model == "/models/gemma"
    assert settings.max_model_len == 4096
    assert settings.dtype == "float16"
    assert settings.trust_remote_code is True
    assert settings.allow_unsafe_weights is False
    assert Settings.load([], {"MODELDROP_SERVING_MODEL": "gs://b/env"}).model == "gs://b/env"
    assert Settings.load(["--model", "/m", "--cache-dir", "/c"], {}).cache_dir == Path("/c")


def test_the_served_name_defaults_to_the_model_not_its_version() -> None:
    """models/<model>/<version> serves as <model>; another path serves as its last part."""
    assert Settings.load(["--model", "gs://b/models/gemma-2b/v7/"], {}).model_name == "gemma-2b"
    assert Settings.load(["--model", "/srv/weights/tiny"], {}).model_name == "tiny"
    named = Settings.load(["--model", "/srv/x", "--served-model-name", "chat"], {})
    assert named.model_name == "chat"


def test_settings_are_frozen() -> None:
    """Settings cannot change after they were read."""
    settings = Settings.load(["--model", "/m"], {})
    with pytest.raises(AttributeError):
        settings.model = "/other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        ([], {}, "no model: pass --model"),
        (["--model", "/m", "--max-model-len", "abc"], {}, "--max-model-len must be an integer"),
        (
            ["--model", "/m"],
            {"MODELDROP_SERVING_MAX_NUM_SEQS": "0"},
            "MODELDROP_SERVING_MAX_NUM_SEQS must be at least 1",
        ),
        (["--model", "/m"], {"AIP_HTTP_PORT": "99999"}, "AIP_HTTP_PORT must be a TCP port"),
        (["--model", "/m"], {"AIP_PREDICT_ROUTE": "predict"}, "AIP_PREDICT_ROUTE must be a path"),
        (["--model", "/m", "--gpu-memory-utilization", "1.5"], {}, "gpu-memory-utilization"),
        (["--model", "/m", "--dtype", "int3"], {}, "dtype must be one of"),
        (["--model", "/m"], {"MODELDROP_SERVING_ENFORCE_EAGER": "maybe"}, "must be true or false"),
        (["--model", "s3://b/m"], {}, "local folder or gs:// URI"),
        (["--model", "/m", "--default-max-tokens", "9000"], {}, "exceeds max-tokens-limit"),
        (["--model", "/m", "--log-level", "loud"], {}, "--log-level must be"),
    ],
)
def test_bad_settings_fail_at_start_naming_the_setting(
    argv: list[str], env: dict[str, str], message: str
) -> None:
    """Each malformed or missing setting raises SettingsError whose message names it."""
    with pytest.raises(SettingsError, match=message.replace("(", r"\(")):
        Settings.load(argv, env)
