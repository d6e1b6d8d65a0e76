"""Settings come from vLLM's own parser (flags, MODELDROP_SERVING_ARGS, MODELDROP_SERVING_<FLAG>) and AIP_* variables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from serving import flags
from serving.settings import Settings, SettingsError, Vertex


def test_vertex_variables_set_the_port_routes_and_model() -> None:
    """Every AIP_* variable Vertex sets is read; absent ones fall back to defaults."""
    env = {
        "AIP_HTTP_PORT": "7080",
        "AIP_HEALTH_ROUTE": "/v1/endpoints/1/deployedModels/2",
        "AIP_PREDICT_ROUTE": "/v1/endpoints/1/deployedModels/2:predict",
        "AIP_STORAGE_URI": "gs://bucket/models/gemma/v3",
        "AIP_DEPLOYED_MODEL_ID": "2",
        "AIP_ENDPOINT_ID": "1",
        "AIP_MACHINE_TYPE": "g2-standard-8",
        "AIP_ACCELERATOR_TYPE": "NVIDIA_L4",
    }
    settings = Settings.load([], env)
    assert settings.port == 7080 and settings.args.port == 7080
    assert settings.model == "gs://bucket/models/gemma/v3"
    assert settings.model_name == "gemma"
    assert settings.vertex.health_route == "/v1/endpoints/1/deployedModels/2"
    assert settings.vertex.accelerator_type == "NVIDIA_L4"
    defaults = Vertex.from_env({})
    assert (defaults.http_port, defaults.health_route, defaults.predict_route) == (
        8080,
        "/health",
        "/predict",
    )


def test_every_vllm_option_passes_through_and_the_command_line_wins() -> None:
    """vLLM engine options reach its namespace from env and flags; a flag beats MODELDROP_SERVING_ARGS."""
    env = {
        "MODELDROP_SERVING_ARGS": '["--max-model-len", "2048", "--enable-prefix-caching"]',
        "MODELDROP_SERVING_DTYPE": "float16",
        "MODELDROP_SERVING_TRUST_REMOTE_CODE": "true",
        "MODELDROP_SERVING_MAX_INSTANCES": "8",
        "MODELDROP_SERVING_IMAGE": "not a flag",
    }
    argv = ["--model", "/models/gemma", "--max-model-len", "4096", "--kv-cache-dtype", "fp8"]
    settings = Settings.load(argv, env)
    assert settings.model == "/models/gemma"
    assert settings.args.max_model_len == 4096
    assert settings.args.enable_prefix_caching is True
    assert settings.args.kv_cache_dtype == "fp8"
    assert settings.args.dtype == "float16"
    assert settings.trust_remote_code is True
    assert settings.max_instances == 8
    assert settings.unused_env == ("MODELDROP_SERVING_IMAGE",)
    shell = Settings.load([], {"MODELDROP_SERVING_ARGS": "--model /m --tool-call-parser hermes"})
    assert shell.args.tool_call_parser == "hermes"
    assert Settings.load(["--model", "/m", "--cache-dir", "/c"], {}).cache_dir == Path("/c")


def test_the_served_name_defaults_to_the_model_not_its_version() -> None:
    """models/<model>/<version> serves as <model>; another path serves as its last part."""
    assert Settings.load(["--model", "gs://b/models/gemma-2b/v7/"], {}).model_name == "gemma-2b"
    assert Settings.load(["/srv/weights/tiny"], {}).model_name == "tiny"
    named = Settings.load(["--model", "/srv/x", "--served-model-name", "chat"], {})
    assert named.model_name == "chat"


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        ([], {}, "no model: pass --model"),
        (["--model", "/m", "--max-model-len", "abc"], {}, "max-model-len"),
        (["--model", "/m", "--no-such-flag"], {}, "unrecognized arguments: --no-such-flag"),
        (["--model", "/m"], {"AIP_HTTP_PORT": "99999"}, "AIP_HTTP_PORT must be a TCP port"),
        (["--model", "/m"], {"AIP_PREDICT_ROUTE": "predict"}, "AIP_PREDICT_ROUTE must be a path"),
        (["--model", "/m"], {"MODELDROP_SERVING_ENFORCE_EAGER": "maybe"}, "must be true or false"),
        (["--model", "/m"], {"MODELDROP_SERVING_ARGS": "[1]"}, "JSON list of strings"),
        (["--model", "s3://b/m"], {}, "local folder or gs:// URI"),
        (["--model", "/m", "--headless"], {}, "--headless is not supported"),
        (["--model", "/m", "--enable-auto-tool-choice"], {}, "requires --tool-call-parser"),
        (["--model", "/m", "--max-body-bytes", "5"], {}, "at least 1024"),
    ],
)
def test_bad_settings_fail_at_start_naming_the_setting(
    argv: list[str], env: dict[str, str], message: str
) -> None:
    """Each malformed, unknown or unsupported setting raises SettingsError whose message names it."""
    with pytest.raises(SettingsError, match=message.replace("(", r"\(")):
        Settings.load(argv, env)


def test_check_lists_the_problems_of_deployment_serving_args() -> None:
    """flags.check accepts vLLM's flags and names unknown ones and those the registration owns."""
    assert flags.check(["--enable-prefix-caching", "--max-num-batched-tokens", "4096"]) == []
    assert flags.check(["--enable-lora", "--max-lora-rank", "16", "--max-loras", "4"]) == []
    assert "unrecognized arguments: --frobnicate" in flags.check(["--frobnicate"])[0]
    assert flags.check(["--port", "9000"]) == ["port is set by the model's registration"]
    assert "invalid int value" in flags.check(["--max-num-seqs", "many"])[0]


def _deployment(state: Path, record: bytes | None) -> dict[str, str]:
    """The environment Vertex (and the registry) give a deployment, its record written if given."""
    if record is not None:
        path = state / flags.deployment_args_name("ep-1", "dm-1")
        path.parent.mkdir(parents=True)
        path.write_bytes(record)
    return {
        "AIP_ENDPOINT_ID": "ep-1",
        "AIP_DEPLOYED_MODEL_ID": "dm-1",
        "AIP_STORAGE_URI": "gs://bucket/models/gemma/v3",
        "MODELDROP_STATE_BUCKET": str(state),
        "MODELDROP_MODEL": "gemma",
    }


def test_a_deployments_serving_args_record_wins_over_the_models_args(tmp_path: Path) -> None:
    """The record at serving-args/<endpoint>/<deployed model>.json is applied after the Model's
    flags and variables, so its values win; flags it does not name keep the Model's."""
    record = json.dumps({"args": ["--max-model-len=2048", "--enable-prefix-caching"]}).encode()
    env = {**_deployment(tmp_path, record), "MODELDROP_SERVING_MAX_NUM_SEQS": "8"}
    settings = Settings.load(["--max-model-len", "1024", "--seed", "7"], env)
    assert settings.args.max_model_len == 2048
    assert settings.args.enable_prefix_caching is True
    assert (settings.args.seed, settings.args.max_num_seqs) == (7, 8)
    assert settings.model_key == "gemma" and settings.state_bucket == str(tmp_path)


def test_no_serving_args_record_means_the_models_args_alone(tmp_path: Path) -> None:
    """A deployment without a record (none was asked for) starts with the Model's args."""
    settings = Settings.load(["--max-model-len", "1024"], _deployment(tmp_path, None))
    assert settings.args.max_model_len == 1024


@pytest.mark.parametrize(
    ("record", "needle"),
    [
        (b"{not json", "are not JSON"),
        (b'{"args": "--enforce-eager"}', "an 'args' list of strings"),
        (b'{"args": ["--port", "9000"]}', "port is set by the model's registration"),
        (b'{"args": ["--trust-remote-code"]}', "trust-remote-code is set by the model's"),
        (b'{"args": ["--frobnicate"]}', "unrecognized arguments: --frobnicate"),
    ],
)
def test_an_unusable_serving_args_record_stops_the_start(
    tmp_path: Path, record: bytes, needle: str
) -> None:
    """A record that can't be read or sets what the Model pins fails the settings (the process
    exits before its health route answers), naming the record."""
    with pytest.raises(SettingsError, match="serving args at") as caught:
        Settings.load([], _deployment(tmp_path, record))
    assert needle in str(caught.value)


def test_the_compile_cache_is_on_with_a_bucket_unless_turned_off(tmp_path: Path) -> None:
    """It needs the state bucket; --no-compile-cache (or its variable) turns it off; the root is
    vLLM's; Triton's and inductor's caches are pointed inside it unless they are set."""
    bucket = {"MODELDROP_STATE_BUCKET": str(tmp_path), "VLLM_CACHE_ROOT": "/c"}
    assert not Settings.load(["--model", "/m"], {}).compile_cache
    on = Settings.load(["--model", "/m"], bucket)
    assert on.compile_cache and on.compile_cache_root == Path("/c")
    assert on.compile_cache_env == {
        "TRITON_CACHE_DIR": "/c/triton_cache",
        "TORCHINDUCTOR_CACHE_DIR": "/c/inductor_cache",
    }
    assert not Settings.load(["--model", "/m", "--no-compile-cache"], bucket).compile_cache
    off = {**bucket, "MODELDROP_SERVING_NO_COMPILE_CACHE": "1", "TRITON_CACHE_DIR": "/t"}
    assert not Settings.load(["--model", "/m"], off).compile_cache
    assert Settings.load(["--model", "/m"], off).compile_cache_env == {
        "TORCHINDUCTOR_CACHE_DIR": "/c/inductor_cache"
    }
    xdg = Settings.load(["--model", "/m"], {"XDG_CACHE_HOME": "/x"})
    assert xdg.compile_cache_root == Path("/x/vllm")


def test_engine_config_is_the_one_vllm_serve_builds(tiny_model: Path) -> None:
    """The container's path (its settings, then vLLM's engine config) gives the VllmConfig that
    `vllm serve`'s own parser gives for the same flags, field by field, the scheduler's included."""
    import argparse
    import dataclasses

    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.entrypoints.launchers.cli_args import make_arg_parser, validate_parsed_serve_args
    from vllm.usage.usage_lib import UsageContext
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    from serving.engine import _engine_config

    given = ["--max-model-len", "512", "--max-num-seqs", "8", "--enable-prefix-caching"]
    settings = Settings.load(["--model", str(tiny_model), *given], env={})
    _, container = _engine_config(argparse.Namespace(**vars(settings.args)))
    served = ["--served-model-name", settings.model_name]
    serve_args = make_arg_parser(FlexibleArgumentParser()).parse_args(
        ["--model", str(tiny_model), *served, *given]
    )
    validate_parsed_serve_args(serve_args)
    vllm_serve = AsyncEngineArgs.from_cli_args(serve_args).create_engine_config(
        usage_context=UsageContext.OPENAI_API_SERVER
    )
    assert vllm_serve.scheduler_config.max_num_seqs == 8  # the flags reached the config
    differing = [
        field.name
        for field in dataclasses.fields(container)
        if field.name != "instance_id"  # random per config
        and repr(getattr(container, field.name)) != repr(getattr(vllm_serve, field.name))
    ]
    assert differing == []
