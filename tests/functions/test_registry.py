"""What a version folder becomes in the Model Registry: aliases, labels, and a serving spec fit for long loads."""

from __future__ import annotations

from support.builders import make_env

from modeldrop.config import Settings
from modeldrop.layout import VersionFolder
from modeldrop.registry import content_digest, model_spec, version_alias


def test_folders_starting_with_a_digit_get_a_letter_alias() -> None:
    """Vertex aliases start with a letter: "1" -> "v1", "2024-06-01" -> "v2024-06-01", "v3" stays."""
    assert [version_alias(v) for v in ("1", "2024-06-01", "v3", "prod")] == [
        "v1",
        "v2024-06-01",
        "v3",
        "prod",
    ]


def test_the_spec_points_the_serving_container_at_the_pinned_folder() -> None:
    """Image from settings, args naming the gs:// folder, Vertex routes and port, `latest` alias, managed labels."""
    settings = Settings.from_env(make_env())
    spec = model_spec(VersionFolder("weights", "gemma-2b-it", "1"), settings, "abc")
    assert spec.image == settings.serving_image
    assert spec.args == [
        "--model",
        "gs://weights/models/gemma-2b-it/1/",
        "--served-model-name",
        "gemma-2b-it",
    ]
    assert (spec.predict_route, spec.health_route, spec.port) == ("/predict", "/health", 8080)
    assert spec.aliases == ("v1", "latest")
    assert spec.labels == {
        "managed-by": "modeldrop",
        "modeldrop-model": "gemma-2b-it",
        "modeldrop-version": "1",
        "modeldrop-upload": "abc",
    }
    # The container finds its deployment's serving args and the model's adapters in the state bucket.
    assert spec.env == {
        "MODELDROP_STATE_BUCKET": settings.state_bucket,
        "MODELDROP_MODEL": "gemma-2b-it",
    }


def test_probes_and_timeout_allow_an_hour_long_load() -> None:
    """The startup probe tolerates an hour of loading and the deployment timeout is longer still."""
    spec = model_spec(VersionFolder("w", "m", "v1"), Settings.from_env(make_env()), "d")
    startup = spec.startup_probe
    assert startup["period_seconds"] * startup["failure_threshold"] >= 3600
    assert spec.deployment_timeout_s >= 3600 and spec.health_probe["failure_threshold"] >= 2


def test_policy_flags_reach_the_container() -> None:
    """Allowing remote code or pickle in settings passes the matching serving switches, and only then."""
    allowed = Settings.from_env(make_env(allow_remote_code="true", allow_pickle="true"))
    args = model_spec(VersionFolder("w", "m", "v1"), allowed, "d").args
    assert "--trust-remote-code" in args and "--allow-unsafe-weights" in args


def test_the_content_digest_ignores_order() -> None:
    """The same generations in any order give the same digest; other generations another."""
    assert content_digest([3, 1, 2]) == content_digest([1, 2, 3]) != content_digest([1, 2, 4])
