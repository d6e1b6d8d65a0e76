"""Layout, labels, durations, config and the checked-in schemas behave as the contracts say."""

from __future__ import annotations

import json

import jsonschema
import pytest
from support.builders import make_command, make_env

from modeldrop import labels
from modeldrop.config import Settings
from modeldrop.durations import format_duration, parse_duration
from modeldrop.errors import ConfigError
from modeldrop.layout import parse_folder_uri, parse_object_name
from modeldrop.results import Result, Status
from modeldrop.schemas import SCHEMA_DIR, render, schemas


def test_object_names_split_into_model_version_and_file() -> None:
    """models/<model>/<version>/<file> names the version folder and the file."""
    parsed = parse_object_name("weights", "models/gemma-2b-it/v1/config.json")
    assert (parsed.folder.model, parsed.folder.version, parsed.file_name) == (
        "gemma-2b-it",
        "v1",
        "config.json",
    )
    assert parsed.folder.uri == "gs://weights/models/gemma-2b-it/v1/"


@pytest.mark.parametrize(
    "name",
    [
        "other/gemma/v1/config.json",
        "models/Gemma/v1/config.json",
        "models/gemma/v1/sub/config.json",
        "models/gemma/../config.json",
        "models/gemma/v1/..",
        "models/gemma/v_1/config.json",
        "models/" + "a" * 64 + "/v1/config.json",
    ],
)
def test_names_outside_the_layout_are_refused(name: str) -> None:
    """Anything but a label-safe model/version/file path is refused with a reason."""
    with pytest.raises(ValueError):
        parse_object_name("weights", name)


def test_folder_uri_round_trips() -> None:
    """A gs:// folder URI parses back to the same folder."""
    assert parse_folder_uri("gs://weights/models/m/v2/").uri == "gs://weights/models/m/v2/"


def test_durations_parse_and_format() -> None:
    """Durations read as people write them and print in the shortest exact form."""
    assert [parse_duration(x) for x in ("90s", "30m", "2h", "1d", "45", 7)] == [
        90,
        1800,
        7200,
        86400,
        45,
        7,
    ]
    assert [format_duration(x) for x in (90, 1800, 7200, 0)] == ["90s", "30m", "2h", "0s"]


def test_endpoint_labels_carry_ttl_and_keep_warm() -> None:
    """Labels hold what the sweep needs: managed-by, model, TTL, keep-warm."""
    made = labels.endpoint_labels("gemma", 1800, keep_warm=True)
    assert labels.is_managed(made)
    assert labels.idle_ttl_seconds(made, default=60) == 1800
    assert labels.keep_warm(made)


def test_settings_name_every_missing_variable() -> None:
    """A missing variable fails at start with its name."""
    env = make_env()
    del env["MODELDROP_STATE_BUCKET"], env["MODELDROP_RESULTS_TOPIC"]
    with pytest.raises(ConfigError, match="MODELDROP_STATE_BUCKET, MODELDROP_RESULTS_TOPIC"):
        Settings.from_env(env)


def test_settings_read_durations_and_flags() -> None:
    """Optional variables override the defaults; bad values name the variable."""
    settings = Settings.from_env(make_env(default_idle_ttl="10m", allow_pickle="true"))
    assert settings.default_idle_ttl_s == 600 and settings.allow_pickle
    with pytest.raises(ConfigError, match="MODELDROP_DEPLOY_GRACE"):
        Settings.from_env(make_env(deploy_grace="later"))


def test_checked_in_schemas_match_the_models() -> None:
    """schemas/*.json is what the models generate (run `make schemas` after changing them)."""
    for name, schema in schemas().items():
        assert (SCHEMA_DIR / name).read_text() == render(schema), f"schemas/{name} is stale"


def test_commands_and_results_validate_against_their_schemas() -> None:
    """The published JSON Schemas accept what the code produces."""
    command_schema = json.loads((SCHEMA_DIR / "command.schema.json").read_text())
    result_schema = json.loads((SCHEMA_DIR / "result.schema.json").read_text())
    jsonschema.validate(make_command("deploy", idle_ttl="30m"), command_schema)
    result = Result(request_id="r1", kind="command", action="deploy", status=Status.READY)
    jsonschema.validate(json.loads(result.model_dump_json()), result_schema)
    assert json.loads(result.model_dump_json())["terminal"] is True
