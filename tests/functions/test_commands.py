"""Commands parse once at the boundary; every problem in a bad one is named."""

from __future__ import annotations

import json

import pytest
from support.builders import make_command

from modeldrop.commands import ACTIONS, Deploy, Traffic, parse_command
from modeldrop.errors import PermanentError


@pytest.mark.parametrize("action", ACTIONS)
def test_every_action_parses_from_json_bytes(action: str) -> None:
    """A valid body of each action becomes the typed command for it."""
    command = parse_command(json.dumps(make_command(action)).encode())
    assert command.action == action


def test_deploy_defaults_are_those_a_user_expects() -> None:
    """Deploy defaults: one L4, one replica, all traffic, endpoint named after the model."""
    command = parse_command(make_command("deploy"))
    assert isinstance(command, Deploy)
    assert (command.accelerator, command.accelerator_count, command.min_replicas) == (
        "NVIDIA_L4",
        1,
        1,
    )
    assert command.endpoint_name == "gemma-tiny"
    assert command.traffic_percent == 100


def test_idle_ttl_accepts_people_durations() -> None:
    """'30m' means 1800 seconds; a bare number means seconds."""
    assert parse_command(make_command(idle_ttl="30m")).idle_ttl == 1800  # type: ignore[union-attr]
    assert parse_command(make_command(idle_ttl=90)).idle_ttl == 90  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (make_command(colour="red"), "colour: Extra inputs are not permitted"),
        ({**make_command(), "action": "explode"}, "does not match any of the expected tags"),
        (make_command(model="../etc"), "model: String should match pattern"),
        (make_command(min_replicas=-1), "min_replicas"),
        (
            make_command(min_replicas=3, max_replicas=2),
            "max_replicas (2) is below min_replicas (3)",
        ),
        (make_command(idle_ttl="soon"), "bad duration 'soon'"),
        (make_command(request_id=None), "request_id: Field required"),
        (make_command("traffic", split={"v1": 50, "v2": 20}), "adds up to 70, not 100"),
    ],
)
def test_bad_commands_are_permanent_errors_naming_the_problem(
    body: dict[str, object], needle: str
) -> None:
    """A bad command raises PermanentError whose reasons name the field and the rule."""
    with pytest.raises(PermanentError) as caught:
        parse_command(body)
    assert any(needle in reason for reason in caught.value.reasons), caught.value.reasons


@pytest.mark.parametrize("raw", [b"{not json", b"[]", b"null", "\u0000".encode(), b""])
def test_malformed_json_is_a_permanent_error(raw: bytes) -> None:
    """Bytes that aren't a JSON object are refused, never retried."""
    with pytest.raises(PermanentError):
        parse_command(raw)


def test_huge_messages_are_refused_before_parsing() -> None:
    """A body over the size limit is refused by size."""
    with pytest.raises(PermanentError, match="the limit is"):
        parse_command(b"{" + b" " * 100_000 + b"}")


def test_traffic_split_keeps_versions() -> None:
    """A canary split keeps each version's share."""
    command = parse_command(make_command("traffic"))
    assert isinstance(command, Traffic)
    assert command.split == {"v1": 90, "v2": 10}


def test_deploy_takes_serving_args_vllm_knows() -> None:
    """vLLM engine and server flags, in any of the forms its parser reads, pass as given."""
    args = ["--max-model-len", "2048", "--enable-prefix-caching", "--max_num_seqs=8", "-O3"]
    args += ["-qfp8", "--tensor-parallel", "1"]  # argparse: a stuck value, a unique prefix
    command = parse_command(make_command(serving_args=args))
    assert isinstance(command, Deploy) and command.serving_args == args
    assert parse_command(make_command()).serving_args is None  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--frobnicate"], "--frobnicate is not a flag of vLLM"),
        (["--max-modl-len", "1"], "did you mean --max-model-len?"),
        (["-tp2"], "two-character flags only: -tp 2"),
        (["--max", "3"], "--max is ambiguous: it could be --max-body-bytes"),
        (["--served-model", "other"], "--served-model-name is set by the model's"),
        (["--port", "9000"], "--port is set by the model's registration"),
        (["--served-model-name", "other"], "--served-model-name is set by the model's"),
        (["--trust-remote-code"], "--trust-remote-code is set by the model's registration"),
        (["--headless"], "--headless is not supported"),
        (["--enforce-eager", "true"], "'true' follows --enforce-eager, which takes no value"),
        (["--enforce-eager=1"], "--enforce-eager takes no value"),
        (["--max-model-len"], "--max-model-len needs a value"),
        (["--dtype", "fp7"], "--dtype must be one of"),
        (["2048"], "'2048' is not a flag"),
        ([""], "serving_args.0"),
        ("--max-model-len 2048", "serving_args: Input should be a valid array"),
    ],
)
def test_deploy_refuses_serving_args_the_container_would_not_take(
    args: object, needle: str
) -> None:
    """Unknown, owned, unsupported and malformed serving args make the command invalid, naming the flag."""
    with pytest.raises(PermanentError) as caught:
        parse_command(make_command(serving_args=args))
    assert any(needle in reason for reason in caught.value.reasons), caught.value.reasons
