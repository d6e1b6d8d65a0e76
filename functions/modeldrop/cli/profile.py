"""Where the CLI points: the local stack (its state file) or a Google Cloud project (flags, env, a profile file).

Read once at start into a frozen Profile; every other CLI module takes the Profile, never the env.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modeldrop.errors import ConfigError

LOCAL = "local"
GCP = "gcp"
# Names terraform gives by default; a profile file or flags override them.
DEFAULT_TOPICS = {
    "commands_topic": "modeldrop-commands",
    "results_topic": "modeldrop-results",
}
DEFAULT_REGION = "us-central1"
EMULATOR_VARIABLES = ("PUBSUB_EMULATOR_HOST", "STORAGE_EMULATOR_HOST")


class StackMissing(ConfigError):
    """`--profile local` but no local stack runs in the data folder."""


@dataclass(frozen=True)
class Profile:
    """Everything the CLI needs to reach one modeldrop installation."""

    name: str
    project: str
    region: str
    weights_bucket: str
    state_bucket: str | None
    commands_topic: str
    results_topic: str
    # http://127.0.0.1:PORT for the local stack; None for Vertex AI's regional endpoint.
    vertex_api_endpoint: str | None = None
    monitoring_api_endpoint: str | None = None
    emulator_env: tuple[tuple[str, str], ...] = ()
    # The front door (the gateway function): the local stack's, or the URL terraform outputs.
    gateway_url: str | None = None

    @property
    def is_local(self) -> bool:
        return bool(self.emulator_env)

    @property
    def vertex_base_url(self) -> str:
        return self.vertex_api_endpoint or f"https://{self.region}-aiplatform.googleapis.com"

    def endpoint_path(self, endpoint: str) -> str:
        return f"projects/{self.project}/locations/{self.region}/endpoints/{endpoint}"

    def endpoint_url(self, endpoint: str, dedicated_dns: str = "") -> str:
        """The endpoint's prediction base URL: the shared host, or a dedicated endpoint's own DNS
        (`Endpoint.dedicated_endpoint_dns`; locally the emulator's URL, see `endpoint_route`)."""
        return self.endpoint_route(endpoint, dedicated_dns)[0]

    def endpoint_route(self, endpoint: str, dedicated_dns: str = "") -> tuple[str, dict[str, str]]:
        """The base URL and extra headers of the endpoint's predictions: a dedicated endpoint is
        served on its DNS only, which the local emulator plays by the Host header."""
        from modeldrop.prediction import route

        return route(self.vertex_base_url, f"/v1/{self.endpoint_path(endpoint)}", dedicated_dns)

    def activate(self, environ: dict[str, str] | os._Environ[str] = os.environ) -> None:
        """Point the Google SDKs at this profile: they read the emulator hosts from the environment.

        A GCP profile removes emulator variables a shell may carry, so a command never lands
        on a local emulator by accident.
        """
        for name in EMULATOR_VARIABLES:
            environ.pop(name, None)
        environ.update(dict(self.emulator_env))
        if self.is_local:
            environ.setdefault("GOOGLE_CLOUD_PROJECT", self.project)

    def settings_env(self) -> dict[str, str]:
        """The MODELDROP_* variables the control plane's adapters read, for this profile."""
        env = {
            "MODELDROP_PROJECT": self.project,
            "MODELDROP_REGION": self.region,
            "MODELDROP_WEIGHTS_BUCKET": self.weights_bucket,
            "MODELDROP_COMMANDS_TOPIC": self.commands_topic,
            "MODELDROP_RESULTS_TOPIC": self.results_topic,
        }
        if self.state_bucket:
            env["MODELDROP_STATE_BUCKET"] = self.state_bucket
        if self.vertex_api_endpoint:
            env["MODELDROP_VERTEX_API_ENDPOINT"] = self.vertex_api_endpoint
        if self.monitoring_api_endpoint:
            env["MODELDROP_MONITORING_API_ENDPOINT"] = self.monitoring_api_endpoint
        return env


def default_profile_file(env: Mapping[str, str]) -> Path:
    config_home = Path(env.get("XDG_CONFIG_HOME") or Path(env.get("HOME", "~")) / ".config")
    return (config_home / "modeldrop" / "profiles.toml").expanduser()


def resolve(
    name: str | None,
    overrides: Mapping[str, str | None],
    env: Mapping[str, str] = os.environ,
    local_dir: Path | None = None,
) -> Profile:
    """The profile `name` (default: $MODELDROP_PROFILE, else local), with flags in `overrides` on top."""
    name = name or env.get("MODELDROP_PROFILE") or LOCAL
    if name == LOCAL:
        return _local(local_dir or _local_dir(env))
    values: dict[str, Any] = {"region": DEFAULT_REGION, **DEFAULT_TOPICS}
    file_values = _from_file(name, env) if name != GCP else _from_file_optional(GCP, env)
    values.update(file_values)
    for key in ("project", "region", "weights_bucket", "state_bucket", "gateway_url") + tuple(
        DEFAULT_TOPICS
    ):
        if env.get(f"MODELDROP_{key.upper()}"):  # flags > environment > profile file
            values[key] = env[f"MODELDROP_{key.upper()}"]
    values.update({k: v for k, v in overrides.items() if v})
    if not values.get("project") and env.get("GOOGLE_CLOUD_PROJECT"):
        values["project"] = env["GOOGLE_CLOUD_PROJECT"]
    if values.get("prefix") and not values.get("weights_bucket"):
        values["weights_bucket"] = f"{values['prefix']}-weights"
        values.setdefault("state_bucket", f"{values['prefix']}-state")
    missing = [k for k in ("project", "region", "weights_bucket") if not values.get(k)]
    if missing:
        flags = ", ".join(f"--{k.replace('_', '-')} (or MODELDROP_{k.upper()})" for k in missing)
        raise ConfigError(
            f"profile {name!r} does not say {', '.join(missing)}: pass {flags}, or add them to "
            f"[profiles.{name}] in {default_profile_file(env)}"
        )
    return Profile(
        name=name,
        project=str(values["project"]),
        region=str(values["region"]),
        weights_bucket=str(values["weights_bucket"]),
        state_bucket=values.get("state_bucket"),
        commands_topic=str(values["commands_topic"]),
        results_topic=str(values["results_topic"]),
        gateway_url=values.get("gateway_url"),
    )


def _local_dir(env: Mapping[str, str]) -> Path:
    from local.stack_state import default_data_dir

    return default_data_dir(env)


def _local(data_dir: Path) -> Profile:
    from local.stack import running_state

    state = running_state(data_dir)
    if state is None:
        raise StackMissing(
            f"no local stack is running (looked in {data_dir}): start it with `modeldrop local up`, "
            "or pick a Google Cloud profile with --profile"
        )
    env = state.env
    return Profile(
        name=LOCAL,
        project=state.project,
        region=state.region,
        weights_bucket=env["MODELDROP_WEIGHTS_BUCKET"],
        state_bucket=env.get("MODELDROP_STATE_BUCKET"),
        commands_topic=env["MODELDROP_COMMANDS_TOPIC"],
        results_topic=env["MODELDROP_RESULTS_TOPIC"],
        vertex_api_endpoint=env["MODELDROP_VERTEX_API_ENDPOINT"],
        monitoring_api_endpoint=env.get("MODELDROP_MONITORING_API_ENDPOINT"),
        emulator_env=tuple((k, env[k]) for k in EMULATOR_VARIABLES),
        gateway_url=state.gateway_url,
    )


def _from_file_optional(name: str, env: Mapping[str, str]) -> dict[str, Any]:
    try:
        return _from_file(name, env)
    except ConfigError:
        return {}


def _from_file(name: str, env: Mapping[str, str]) -> dict[str, Any]:
    path = Path(env["MODELDROP_PROFILES"]) if env.get("MODELDROP_PROFILES") else None
    path = path or default_profile_file(env)
    try:
        document = tomllib.loads(path.read_text())
    except FileNotFoundError as error:
        raise ConfigError(f"profile {name!r}: no profile file at {path}") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from error
    profiles = document.get("profiles", {})
    if name not in profiles:
        known = ", ".join(sorted(profiles)) or "none"
        raise ConfigError(f"no profile {name!r} in {path} (profiles there: {known})")
    allowed = {
        "project",
        "region",
        "prefix",
        "weights_bucket",
        "state_bucket",
        "gateway_url",
    } | set(DEFAULT_TOPICS)
    unknown = set(profiles[name]) - allowed
    if unknown:
        raise ConfigError(
            f"[profiles.{name}] in {path} has unknown key(s) {sorted(unknown)}; "
            f"allowed: {sorted(allowed)}"
        )
    return dict(profiles[name])
