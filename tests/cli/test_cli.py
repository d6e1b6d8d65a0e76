"""The CLI refuses bad arguments before sending anything, finds its profile, and uploads with crc32c checked and resumption."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path

import pytest
from support.builders import make_safetensors

from modeldrop.cli import main
from modeldrop.cli.context import EXIT_ENVIRONMENT, EXIT_OK, EXIT_USAGE, Unreachable
from modeldrop.cli.follow import exit_code, format_result
from modeldrop.cli.profile import resolve
from modeldrop.cli.progress import ProgressBar
from modeldrop.cli.serve import direct_route
from modeldrop.errors import ConfigError
from modeldrop.resources import Endpoint
from modeldrop.results import Result, Status


def write_model(folder: Path, **overrides: bytes) -> Path:
    """A folder that passes validation (a real safetensors header is not needed to pass it)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "config.json": json.dumps({"architectures": ["GemmaForCausalLM"]}).encode(),
        "tokenizer.json": b"{}",
        "model.safetensors": make_safetensors({"lm_head.weight": [64, 64]}),
        **overrides,
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def run_cli(*argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_folder_validation_would_reject_is_refused_before_uploading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Pickle weights and a missing tokenizer: exit 2, every reason printed, no stack needed."""
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": ["GemmaForCausalLM"]}))
    (folder / "pytorch_model.bin").write_bytes(b"x")
    code, _, err = run_cli(
        "upload", str(folder), "--model", "m", "--local-dir", str(tmp_path), capsys=capsys
    )
    assert code == EXIT_USAGE
    assert "would be rejected; nothing was uploaded" in err
    assert "pytorch_model.bin is a pickle format" in err
    assert "no tokenizer" in err


def test_a_garbage_safetensors_file_is_refused_before_uploading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI reads each shard's header as on_upload does: random bytes never leave the machine."""
    folder = tmp_path / "junk"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": ["GemmaForCausalLM"]}))
    (folder / "tokenizer.json").write_text("{}")
    (folder / "model.safetensors").write_bytes((64).to_bytes(8, "little") + bytes(range(64)))
    code, _, err = run_cli(
        "upload", str(folder), "--model", "m", "--local-dir", str(tmp_path), capsys=capsys
    )
    assert code == EXIT_USAGE
    assert "model.safetensors is not safetensors" in err


def test_a_model_name_that_is_not_label_safe_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Upper case and underscores can't be a model name: exit 2 naming the rule."""
    code, _, err = run_cli(
        "upload", str(write_model(tmp_path / "m")), "--model", "My_Model", capsys=capsys
    )
    assert code == EXIT_USAGE
    assert "not label-safe" in err


def test_a_nested_folder_is_refused_with_the_layout_rule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A sub-folder can't be uploaded into a flat version folder."""
    folder = write_model(tmp_path / "m")
    (folder / "extra").mkdir()
    code, _, err = run_cli("upload", str(folder), "--model", "m", capsys=capsys)
    assert code != EXIT_OK
    assert "is a folder: a version folder is flat" in err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["deploy", "m", "--idle-ttl", "soon"], "bad duration 'soon'"),
        (["deploy", "m", "--min-replicas", "3", "--max-replicas", "2"], "below min_replicas"),
        (["traffic", "ep", "v1=60", "v2=30"], "adds up to 90, not 100"),
        (["deploy", "m", "--", "--frobnicate"], "--frobnicate is not a flag of vLLM"),
        (["deploy", "m", "--", "--port", "9000"], "--port is set by the model's registration"),
        (["traffic", "ep", "v1:60"], "write VERSION=PERCENT"),
        (["scale", "Bad_Endpoint", "--min-replicas", "1"], "endpoint"),
    ],
)
def test_a_bad_command_is_refused_before_anything_is_published(
    argv: list[str], expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command is validated with the functions' own models; with no stack running it still fails as usage (2)."""
    code, _, err = run_cli(*argv, "--local-dir", str(tmp_path), capsys=capsys)
    assert code == EXIT_USAGE
    assert expected in err


def test_a_missing_local_stack_is_named_with_how_to_start_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 3 and a pointer to `modeldrop local up` when no stack runs in the data folder."""
    code, _, err = run_cli("deploy", "m", "--local-dir", str(tmp_path), capsys=capsys)
    assert code == EXIT_ENVIRONMENT
    assert "modeldrop local up" in err
    code, _, err = run_cli("local", "status", "--local-dir", str(tmp_path), capsys=capsys)
    assert code == EXIT_ENVIRONMENT


def test_argparse_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """A missing required flag is a usage error with argparse's own message."""
    with pytest.raises(SystemExit) as exited:
        main(["upload", "somewhere"])
    assert exited.value.code == EXIT_USAGE
    assert "--model" in capsys.readouterr().err


def test_a_gcp_profile_takes_flags_over_env_over_the_profile_file(tmp_path: Path) -> None:
    """Flags beat MODELDROP_* variables, which beat profiles.toml; a prefix names both buckets."""
    profiles = tmp_path / "profiles.toml"
    profiles.write_text(
        '[profiles.prod]\nproject = "from-file"\nregion = "europe-west4"\nprefix = "acme"\n'
    )
    env = {"MODELDROP_PROFILES": str(profiles), "MODELDROP_REGION": "us-east1"}
    profile = resolve("prod", {"project": "from-flag"}, env)
    assert (profile.project, profile.region) == ("from-flag", "us-east1")
    assert (profile.weights_bucket, profile.state_bucket) == ("acme-weights", "acme-state")
    assert not profile.is_local
    assert profile.endpoint_url("e").startswith("https://us-east1-aiplatform.googleapis.com/v1/")


def test_a_dedicated_endpoint_is_predicted_on_its_own_dns(tmp_path: Path) -> None:
    """`predict`/`chat` direct: a dedicated endpoint at https://{dns}/v1/..., the emulator's URL
    with `Host: {dns}` locally; one whose DNS Vertex has not published yet is refused (exit 3),
    not sent to the shared host (the real emulator: tests/functions/test_idle_policy.py)."""
    dns = "e.us-east1-123456789012.prediction.vertexai.goog"
    path = "/v1/projects/p/locations/us-east1/endpoints/e"
    env = {"HOME": str(tmp_path), "MODELDROP_REGION": "us-east1"}
    gcp = resolve("gcp", {"project": "p", "weights_bucket": "b"}, env)
    assert gcp.endpoint_route("e", dns) == (f"https://{dns}{path}", {})
    assert gcp.endpoint_url("e") == f"https://us-east1-aiplatform.googleapis.com{path}"
    local = replace(gcp, vertex_api_endpoint="http://127.0.0.1:9")
    assert local.endpoint_route("e", dns) == (f"http://127.0.0.1:9{path}", {"host": dns})
    found = Endpoint("e", "projects/p/locations/us-east1/endpoints/e", {}, (), {}, dedicated=True)
    with pytest.raises(Unreachable, match="not published its DNS"):
        direct_route(gcp, found)
    assert direct_route(gcp, replace(found, dedicated_dns=dns))[0] == f"https://{dns}{path}"


def test_a_gcp_profile_missing_its_project_says_which_flag_to_pass(tmp_path: Path) -> None:
    """ConfigError names --project and the variable, and unknown profile names list the known ones."""
    with pytest.raises(ConfigError, match="--project"):
        resolve("gcp", {"weights_bucket": "b"}, {"HOME": str(tmp_path)})
    profiles = tmp_path / "p.toml"
    profiles.write_text('[profiles.dev]\nproject = "x"\n')
    with pytest.raises(ConfigError, match="profiles there: dev"):
        resolve("prod", {}, {"MODELDROP_PROFILES": str(profiles)})


def test_a_gcp_profile_clears_emulator_variables_from_the_environment(tmp_path: Path) -> None:
    """activate() removes PUBSUB/STORAGE emulator hosts a shell may carry, so nothing lands on an emulator by accident."""
    profile = resolve("gcp", {"project": "p", "weights_bucket": "b"}, {"HOME": str(tmp_path)})
    environ = {"PUBSUB_EMULATOR_HOST": "127.0.0.1:1", "STORAGE_EMULATOR_HOST": "x", "KEEP": "1"}
    profile.activate(environ)
    assert environ == {"KEEP": "1"}


def test_results_print_one_line_each_and_map_to_exit_codes() -> None:
    """A rejected upload prints its reasons and exits 1; ready exits 0."""
    rejected = Result(
        request_id="r",
        kind="upload",
        action="upload",
        status=Status.REJECTED,
        message="rejected",
        reasons=["no tokenizer"],
        model="m",
        version="v1",
    )
    line = format_result(rejected, 1.5)
    assert "rejected" in line and "m/v1" in line and "    - no tokenizer" in line
    assert exit_code(rejected) == 1
    assert exit_code(rejected.model_copy(update={"status": Status.READY})) == 0


def test_the_progress_bar_reports_share_rate_and_total() -> None:
    """Off a terminal the bar prints whole lines; the last one says 100% of the total."""
    stream = io.StringIO()
    bar = ProgressBar("upload", 2048, stream, every_s=0.0)
    bar.advance(1024)
    bar.advance(1024)
    bar.finish()
    lines = stream.getvalue().splitlines()
    assert "50.0%" in lines[0]
    assert "100.0%" in lines[-1] and "2.0 KiB/2.0 KiB" in lines[-1]


@pytest.mark.stack
def test_upload_checks_crc32c_and_resumes_file_by_file(tmp_path: Path, gcs_host: str) -> None:
    """Files go up with the bucket's crc32c equal to ours; a second plan skips them; a finished version is immutable."""
    from google.cloud import storage

    from modeldrop.cli.transfer import Transfer
    from modeldrop.cli.upload import checksums, manifest_bytes, plan, run_uploads, scan
    from modeldrop.errors import PermanentError

    storage.Client(project="modeldrop-test").create_bucket("cli-upload-test")
    files, _ = scan(write_model(tmp_path / "m"))
    crcs = checksums(files, 2, io.StringIO())
    transfer = Transfer("modeldrop-test", "cli-upload-test")
    first = plan(transfer, "m", "v1", files, crcs)
    assert {f.name for f in first.to_upload} == {f.name for f in files}
    run_uploads(transfer, first, 2, io.StringIO())
    stored = transfer.existing(first.folder.prefix)
    assert {name: obj.crc32c for name, obj in stored.items()} == crcs
    again = plan(transfer, "m", "v1", files, crcs)
    assert again.to_upload == [] and sorted(again.skipped) == sorted(crcs)
    transfer.write_manifest(again.manifest_name, manifest_bytes(again, "req-1"))
    assert plan(transfer, "m", "v1", files, crcs).complete
    changed = {**crcs, "tokenizer.json": "AAAAAA=="}
    with pytest.raises(PermanentError, match="versions are immutable"):
        plan(transfer, "m", "v1", files, changed)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ([], {}),
        (["--accelerator", "none"], {"accelerator": None}),
        (["--accelerator", "CPU"], {"accelerator": None}),
        (["--accelerator", "NVIDIA_H100_80GB"], {"accelerator": "NVIDIA_H100_80GB"}),
        (["--idle-ttl", "10m", "--keep-warm"], {"idle_ttl": "10m", "keep_warm": True}),
        (["--no-keep-warm"], {"keep_warm": False}),
        (["--traffic", "10", "--min-replicas", "2"], {"traffic_percent": 10, "min_replicas": 2}),
        (
            ["--placement", "NVIDIA_L4", "--placement", "2xNVIDIA_L4@g2-standard-24"]
            + ["--placement", "cpu@n1-standard-8"],
            {
                "placements": [
                    {"accelerator": "NVIDIA_L4"},
                    {
                        "accelerator": "NVIDIA_L4",
                        "accelerator_count": 2,
                        "machine_type": "g2-standard-24",
                    },
                    {"accelerator": None, "machine_type": "n1-standard-8"},
                ]
            },
        ),
        (["--idle-policy", "scale-to-zero"], {"idle_policy": "scale-to-zero"}),
    ],
)
def test_deploy_sends_only_what_the_user_set(flags: list[str], expected: dict[str, object]) -> None:
    """Unset flags are left out (the command's defaults and the endpoint's labels apply); `none`
    and `cpu` send a JSON null accelerator, which the command reads as CPU only."""
    from modeldrop.cli.actions import deploy_body
    from modeldrop.cli.app import build_parser
    from modeldrop.commands import parse_command

    args = build_parser().parse_args(["deploy", "gemma", *flags])
    body = deploy_body(args)
    assert body == {"action": "deploy", "model": "gemma", **expected}
    command = parse_command({**body, "request_id": "cli-1"})
    if "accelerator" in expected:
        assert command.accelerator == expected["accelerator"]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "flags",
    [
        ["--placement", "NVIDIA_L4", "--accelerator", "NVIDIA_L4"],
        ["--placement", "NVIDIA_L4", "--machine-type", "g2-standard-12"],
        ["--placement", "L4 please"],
        ["--placement", "2xcpu"],
    ],
)
def test_bad_placements_are_refused_before_anything_is_sent(flags: list[str]) -> None:
    """--placement beside --accelerator/--machine-type, or one that doesn't parse, is a usage error (exit 2)."""
    from modeldrop.cli.actions import deploy_body
    from modeldrop.cli.app import build_parser
    from modeldrop.cli.context import UsageError

    with pytest.raises(UsageError, match="placement"):
        deploy_body(build_parser().parse_args(["deploy", "gemma", *flags]))


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--", "--max-model-len", "2048"], ["--max-model-len", "2048"]),
        (
            ["--accelerator", "none", "--", "--enable-prefix-caching", "-O3", "--", "x"],
            ["--enable-prefix-caching", "-O3", "--", "x"],
        ),
        (["--idle-ttl", "10m"], None),
        (["--"], None),
    ],
)
def test_deploy_takes_serving_args_after_a_double_dash(
    argv: list[str], expected: list[str] | None
) -> None:
    """Words after the first `--` are the deployment's serving args, sent as given; the options
    before it stay modeldrop's; none given sends no `serving_args`."""
    from modeldrop.cli.actions import deploy_body
    from modeldrop.cli.app import parse_args

    body = deploy_body(parse_args(["deploy", "gemma", *argv]))
    assert body.get("serving_args") == expected
    assert "--accelerator" not in (body.get("serving_args") or [])


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        ([], {}, ("faithful", 0.01)),
        (["--fidelity", "legacy", "--time-scale", "0"], {}, ("legacy", 0.0)),
        (
            [],
            {"MODELDROP_VERTEX_FIDELITY": "legacy", "MODELDROP_VERTEX_TIME_SCALE": "0.5"},
            ("legacy", 0.5),
        ),
        (["--time-scale", "0.02"], {"MODELDROP_VERTEX_TIME_SCALE": "0.5"}, ("faithful", 0.02)),
    ],
)
def test_local_up_plays_vertex_faithfully_unless_told_otherwise(
    argv: list[str], env: dict[str, str], expected: tuple[str, float], tmp_path: Path
) -> None:
    """`local up` starts the faithful emulator at time scale 0.01; flags beat MODELDROP_VERTEX_*."""
    from modeldrop.cli.app import parse_args
    from modeldrop.cli.context import Context
    from modeldrop.cli.local_cmd import stack_config

    args = parse_args(["local", "up", "--local-dir", str(tmp_path), *argv])
    config = stack_config(Context(args, env=env))
    assert (config.fidelity, config.time_scale) == expected


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--time-scale", "-1"], {}, "must not be negative"),
        ([], {"MODELDROP_VERTEX_TIME_SCALE": "fast"}, "must be a number"),
        ([], {"MODELDROP_VERTEX_FIDELITY": "exact"}, "faithful or legacy"),
    ],
)
def test_local_up_refuses_a_bad_fidelity_or_time_scale(
    argv: list[str], env: dict[str, str], message: str, tmp_path: Path
) -> None:
    """A time scale or preset the emulator would refuse is a usage error before anything starts."""
    from modeldrop.cli.app import parse_args
    from modeldrop.cli.context import Context, UsageError
    from modeldrop.cli.local_cmd import stack_config

    args = parse_args(["local", "up", "--local-dir", str(tmp_path), *argv])
    with pytest.raises(UsageError, match=message):
        stack_config(Context(args, env=env))
