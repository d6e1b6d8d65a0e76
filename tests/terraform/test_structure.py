"""terraform/ is wired the way the code in functions/ expects, read offline with python-hcl2."""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import hcl2
import pytest

from modeldrop import config, labels

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "terraform"
MAIN_PY = ROOT / "functions" / "main.py"
FUNCTION = "google_cloudfunctions2_function"
ENTRY_POINTS = {"on_upload", "on_command", "sweep", "gateway"}
# Entry points terraform already deploys whose code is still being written (issue 13: the gateway).
PLANNED = {"gateway"}
# Set only by the local stack; on Google Cloud the real regional endpoints are used.
LOCAL_ONLY = {"MODELDROP_VERTEX_API_ENDPOINT", "MODELDROP_MONITORING_API_ENDPOINT"}


def _clean(value: Any) -> Any:
    """python-hcl2 keeps the quotes of literal strings and block labels, and adds markers: drop them."""
    if isinstance(value, dict):
        return {
            _clean(key): _clean(item) for key, item in value.items() if not key.startswith("__")
        }
    if isinstance(value, list):
        return [_clean(item) for item in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


@cache
def _parsed(folder: Path) -> tuple[tuple[Path, dict[str, Any]], ...]:
    return tuple(
        (path, _clean(hcl2.loads(path.read_text()))) for path in sorted(folder.glob("*.tf"))
    )


def blocks(kind: str, folder: Path = MODULE) -> Iterator[dict[str, Any]]:
    for _, document in _parsed(folder):
        yield from document.get(kind, [])


def resources(folder: Path = MODULE) -> dict[tuple[str, str], dict[str, Any]]:
    """Every resource of the module by (type, name)."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for block in blocks("resource", folder):
        for kind, named in block.items():
            for name, body in named.items():
                found[(kind, name)] = body
    return found


def of_type(kind: str) -> dict[str, dict[str, Any]]:
    return {name: body for (found, name), body in resources().items() if found == kind}


def local(name: str) -> Any:
    for block in blocks("locals"):
        if name in block:
            return block[name]
    raise KeyError(f"no local.{name} in terraform/")


def ref(expression: str) -> str:
    """`${google_service_account.sweep.email}` -> `google_service_account.sweep.email`."""
    match = re.fullmatch(r"\$\{(.+)\}", expression)
    assert match, f"{expression!r} is not a single reference"
    return match.group(1)


def functions() -> dict[str, dict[str, Any]]:
    return of_type(FUNCTION)


def entry_point(body: dict[str, Any]) -> str:
    return str(body["build_config"][0]["entry_point"])


_MERGE = re.compile(r"^\$\{merge\(local\.(?P<base>\w+), \{(?P<extra>[^}]*)\}\)\}$")


def environment(body: dict[str, Any]) -> dict[str, Any]:
    value = body["service_config"][0]["environment_variables"]
    if isinstance(value, str):  # a reference to a shared local
        value = local(ref(value).removeprefix("local."))
    if isinstance(value, str):  # merge(local.shared, {NAME = expression, ...})
        merged = _MERGE.fullmatch(value)
        assert merged, value
        extra = dict(
            (name.strip(), "${" + expression.strip() + "}")
            for name, _, expression in (
                item.partition("=") for item in merged["extra"].split(",") if item.strip()
            )
        )
        value = {**environment_of(merged["base"]), **extra}
    assert isinstance(value, dict)
    return value


def environment_of(name: str) -> dict[str, Any]:
    value = local(name)
    assert isinstance(value, dict)
    return value


def all_tf_files() -> list[Path]:
    return sorted(path for path in MODULE.rglob("*.tf") if ".terraform" not in path.parts)


def test_terraform_declares_the_four_functions_by_entry_point() -> None:
    """Exactly on_upload, on_command, sweep and gateway are deployed, each as a python311 gen2 function."""
    bodies = functions().values()
    assert {entry_point(body) for body in bodies} == ENTRY_POINTS
    assert {body["build_config"][0]["runtime"] for body in bodies} == {"python311"}


def test_entry_points_exist_in_functions_main() -> None:
    """Every entry point terraform names is a top-level function in functions/main.py."""
    if not MAIN_PY.exists():
        pytest.skip("functions/main.py is not written yet (the functions part is in progress)")
    tree = ast.parse(MAIN_PY.read_text(), filename=str(MAIN_PY))
    defined = {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    } | {
        target.id
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    missing = {entry_point(body) for body in functions().values()} - defined
    if missing and missing <= PLANNED - defined:
        pytest.skip(f"functions/main.py does not define {sorted(missing)} yet (planned)")
    assert not missing, f"functions/main.py defines no {sorted(missing)}"


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_each_function_gets_what_the_config_module_reads(name: str) -> None:
    """A function gets every variable config.REQUIRED names, nothing outside config.VARIABLES, and no local-only endpoint."""
    (body,) = [body for body in functions().values() if entry_point(body) == name]
    variables = set(environment(body))
    required = {config.PREFIX + field.upper() for field in config.REQUIRED}
    assert required <= variables, f"{name} lacks {sorted(required - variables)}"
    assert variables <= set(config.VARIABLES), (
        f"{name} gets unknown {sorted(variables - set(config.VARIABLES))}"
    )
    assert not variables & LOCAL_ONLY


def test_environment_points_at_the_resources_terraform_creates() -> None:
    """Bucket, topic and serving-account variables refer to the resources of the matching role."""
    env = local("function_environment")
    assert ref(env["MODELDROP_WEIGHTS_BUCKET"]) == "google_storage_bucket.weights.name"
    assert ref(env["MODELDROP_STATE_BUCKET"]) == "google_storage_bucket.state.name"
    assert ref(env["MODELDROP_COMMANDS_TOPIC"]) == "google_pubsub_topic.commands.name"
    assert ref(env["MODELDROP_RESULTS_TOPIC"]) == "google_pubsub_topic.results.name"
    assert ref(env["MODELDROP_SERVING_SERVICE_ACCOUNT"]) == "google_service_account.serving.email"


def test_every_function_runs_as_its_own_service_account() -> None:
    """Each function runs as a distinct account of this module, none shared with serving, invoker or build."""
    accounts = {
        entry_point(body): ref(body["service_config"][0]["service_account_email"])
        for body in functions().values()
    }
    assert len(set(accounts.values())) == len(accounts)
    declared = {
        f"google_service_account.{name}.email" for name in of_type("google_service_account")
    }
    assert set(accounts.values()) <= declared
    shared = {f"google_service_account.{name}.email" for name in ("serving", "invoker", "build")}
    assert not set(accounts.values()) & shared


def test_no_authoritative_iam() -> None:
    """No *_iam_policy or *_iam_binding anywhere under terraform/, so no apply rewrites others' grants."""
    offenders = [
        f"{path.relative_to(ROOT)}: {kind}.{name}"
        for path in all_tf_files()
        for block in _clean(hcl2.loads(path.read_text())).get("resource", [])
        for kind, named in block.items()
        for name in named
        if kind.endswith(("_iam_policy", "_iam_binding"))
    ]
    assert not offenders


def test_iam_members_use_for_each_never_count() -> None:
    """Every *_iam_member is keyed by for_each, so adding or removing one grant never shifts another."""
    members = {key: body for key, body in resources().items() if key[0].endswith("_iam_member")}
    assert members
    assert not [key for key, body in members.items() if "count" in body]
    assert not [key for key, body in members.items() if "for_each" not in body]


def grants() -> list[dict[str, str]]:
    """Every *_iam_member expanded over its for_each: one dict of its string attributes per grant."""
    expanded: list[dict[str, str]] = []
    for (kind, name), body in resources().items():
        if not kind.endswith("_iam_member"):
            continue
        for_each = body["for_each"]
        values: list[Any]
        if isinstance(for_each, dict):
            values = list(for_each.values())
        elif match := re.fullmatch(r"\$\{toset\(\[(.*)\]\)\}", for_each):
            values = [item.strip().strip('"') for item in match.group(1).split(",")]
        else:  # a conditional map (the CMEK grants): kept as one opaque grant
            values = [for_each]
        for value in values:
            grant = {"resource": f"{kind}.{name}"}
            for key, expression in body.items():
                if not isinstance(expression, str):
                    continue
                if isinstance(value, dict):
                    for attribute, item in value.items():
                        expression = expression.replace(f"${{each.value.{attribute}}}", str(item))
                else:
                    expression = expression.replace("${each.value}", str(value))
                grant[key] = expression
            expanded.append(grant)
    return expanded


def test_only_on_command_may_act_as_the_serving_account() -> None:
    """serviceAccountUser is granted once: to on_command, on the serving account."""
    acts_as = [grant for grant in grants() if grant["role"] == "roles/iam.serviceAccountUser"]
    assert [(grant["service_account_id"], grant["member"]) for grant in acts_as] == [
        ("${google_service_account.serving.name}", "${google_service_account.on_command.member}")
    ]


def test_serving_account_reads_the_weights_and_only_its_prefixes_of_the_state_bucket() -> None:
    """Serving: objectViewer on weights; on the state bucket only activity/ and compile-cache/ (write) and serving-args/, adapters/ (read), by condition: the prefixes the container uses."""
    serving = [
        grant for grant in grants() if grant["member"] == "${google_service_account.serving.member}"
    ]
    assert [(grant.get("bucket"), grant["role"]) for grant in serving] == [
        ("${google_storage_bucket.weights.name}", "roles/storage.objectViewer")
    ]
    assert state_prefixes()["serving"] == {
        "roles/storage.objectUser": ["activity/", "compile-cache/"],
        "roles/storage.objectViewer": ["serving-args/", "adapters/"],
    }
    from serving import compile_cache
    from serving.flags import DEPLOYMENT_ARGS_PREFIX

    assert DEPLOYMENT_ARGS_PREFIX in state_prefixes()["serving"]["roles/storage.objectViewer"]
    # The compile cache is read at start and written once after ready.
    assert compile_cache.PREFIX in state_prefixes()["serving"]["roles/storage.objectUser"]


def state_prefixes() -> dict[str, dict[str, list[str]]]:
    """holder -> role -> object-name prefixes of the conditioned state-bucket grants."""
    body = of_type("google_storage_bucket_iam_member")["state_prefixes"]
    assert ref(body["bucket"]) == "google_storage_bucket.state.name"
    expression = body["condition"][0]["expression"]
    assert "resource.name.startsWith" in expression and "/objects/${prefix}" in expression
    grants: dict[str, dict[str, list[str]]] = {}
    for grant in re.finditer(
        r'holder = "(?P<holder>\w+)", member = google_service_account\.(?P=holder)\.member, role = "(?P<role>[\w/.]+)", prefixes = \[(?P<prefixes>[^\]]*)\]',
        body["for_each"],
    ):
        prefixes = re.findall(r'"([^"]+)"', grant.group("prefixes"))
        grants.setdefault(grant.group("holder"), {})[grant.group("role")] = prefixes
    return grants


def test_gateway_account_keeps_only_wakes_and_activity_in_the_state_bucket() -> None:
    """The gateway may write wakes/ and activity/ of the state bucket and read teardowns/, its
    own wakes' request records and the per-endpoint deploy notes, and nothing else there."""
    assert state_prefixes()["gateway"] == {
        "roles/storage.objectUser": ["wakes/", "activity/"],
        "roles/storage.objectViewer": [
            "teardowns/",
            "requests/gateway-wake-",
            "deploys/",
            "adapter-index/",
        ],
    }


def test_the_gateways_wake_request_ids_fall_under_its_grant() -> None:
    """Every wake the gateway publishes has a request id its conditioned read covers."""
    from datetime import UTC, datetime

    from modeldrop import gateway_rules

    rid = gateway_rules.wake_request_id("e", datetime(2026, 1, 2, tzinfo=UTC))
    assert f"requests/{rid}.json".startswith(state_prefixes()["gateway"]["roles/storage.objectViewer"][1])


def test_gateway_is_an_http_function_behind_iam_with_a_long_timeout() -> None:
    """The gateway has no event trigger, is invoked only by var.gateway.invokers, and holds requests up to an hour."""
    (body,) = [body for body in functions().values() if entry_point(body) == "gateway"]
    assert "event_trigger" not in body
    service = body["service_config"][0]
    assert service["timeout_seconds"] == "${var.gateway.timeout_s}"
    invokers = of_type("google_cloud_run_v2_service_iam_member")["gateway_invokers"]
    assert invokers["for_each"] == "${toset(var.gateway.invokers)}"
    assert invokers["role"] == "roles/run.invoker"
    assert ref(invokers["name"]) == "google_cloudfunctions2_function.gateway.name"
    variable = next(block["gateway"] for block in blocks("variable") if "gateway" in block)
    assert "timeout_s     = optional(number, 3600)" in variable["type"] or "3600" in str(
        variable["type"]
    )


def _target(grant: dict[str, str]) -> str:
    for key in ("bucket", "topic", "subscription", "service_account_id", "repository", "name"):
        if key in grant:
            return ref(grant[key]).split(".")[1]
    return "project"


# What each function's code calls, as (role, where). Adding a call to a function means adding its
# grant in terraform/iam.tf and here.
FUNCTION_GRANTS = {
    "on_upload": {
        ("${google_project_iam_custom_role.registrar.id}", "project"),
        ("roles/storage.objectViewer", "weights"),
        ("roles/storage.objectUser", "state"),
        ("roles/pubsub.publisher", "results"),
        ("roles/pubsub.publisher", "commands"),
    },
    "on_command": {
        ("${google_project_iam_custom_role.deployer.id}", "project"),
        ("${google_project_iam_custom_role.registrar.id}", "project"),
        ("roles/iam.serviceAccountUser", "serving"),
        ("roles/storage.objectViewer", "weights"),
        ("roles/storage.objectUser", "state"),
        ("roles/pubsub.publisher", "results"),
        ("roles/pubsub.publisher", "commands"),
    },
    "sweep": {
        ("${google_project_iam_custom_role.sweeper.id}", "project"),
        ("${google_project_iam_custom_role.metrics_reader.id}", "project"),
        ("roles/storage.objectUser", "state"),
        ("roles/pubsub.publisher", "results"),
        ("roles/pubsub.subscriber", "dead_letter_answers"),
    },
    "gateway": {
        ("${google_project_iam_custom_role.gateway.id}", "project"),
        ("roles/pubsub.publisher", "commands"),
        # and wakes/ and activity/ of the state bucket, by condition (test_gateway_account_keeps_...)
    },
}


@pytest.mark.parametrize("name", sorted(FUNCTION_GRANTS))
def test_each_function_account_has_exactly_the_grants_its_code_needs(name: str) -> None:
    """A function's account holds exactly the roles, on exactly the resources, that its code calls."""
    member = f"${{google_service_account.{name}.member}}"
    held = {(grant["role"], _target(grant)) for grant in grants() if grant["member"] == member}
    assert held == FUNCTION_GRANTS[name]


def test_no_broad_vertex_or_basic_roles() -> None:
    """No identity gets roles/aiplatform.user or wider, or a basic role: custom roles carry the Vertex AI calls."""
    broad = (
        "roles/aiplatform.user",
        "roles/aiplatform.admin",
        "roles/owner",
        "roles/editor",
        "roles/viewer",
    )
    assert not [grant for grant in grants() if grant["role"] in broad]
    roles = of_type("google_project_iam_custom_role")
    assert set(roles) == {"registrar", "deployer", "sweeper", "metrics_reader", "gateway"}
    assert all(
        permission.startswith(("aiplatform.", "monitoring.timeSeries."))
        for body in roles.values()
        for permission in body["permissions"]
    )


def test_commands_are_retried_then_dead_lettered_over_oidc() -> None:
    """The commands push subscription retries with backoff, dead-letters, waits past the timeout, and signs pushes."""
    subscription = of_type("google_pubsub_subscription")["on_command"]
    assert ref(subscription["topic"]) == "google_pubsub_topic.commands.id"
    assert (
        ref(subscription["dead_letter_policy"][0]["dead_letter_topic"])
        == "google_pubsub_topic.dead_letter.id"
    )
    assert subscription["retry_policy"][0]["minimum_backoff"]
    assert "var.functions.on_command.timeout_s" in subscription["ack_deadline_seconds"]
    push = subscription["push_config"][0]
    assert push["push_endpoint"].startswith(
        "${google_cloudfunctions2_function.on_command.service_config[0].uri}"
    )
    assert (
        ref(push["oidc_token"][0]["service_account_email"])
        == "google_service_account.invoker.email"
    )


def test_uploads_reach_on_upload_through_an_eventarc_storage_trigger() -> None:
    """on_upload fires on objects finalized in the weights bucket, retries on failure, as the invoker."""
    (body,) = [body for body in functions().values() if entry_point(body) == "on_upload"]
    trigger = body["event_trigger"][0]
    assert trigger["event_type"] == "google.cloud.storage.object.v1.finalized"
    assert trigger["retry_policy"] == "RETRY_POLICY_RETRY"
    assert ref(trigger["event_filters"][0]["value"]) == "google_storage_bucket.weights.name"
    assert ref(trigger["service_account_email"]) == "google_service_account.invoker.email"


def test_one_source_archive_named_by_its_hash() -> None:
    """All functions build from the one archive object, whose name carries the archive's hash."""
    archive = of_type("google_storage_bucket_object")["functions_source"]
    assert "data.archive_file.functions.output_sha256" in archive["name"]
    objects = {
        body["build_config"][0]["source"][0]["storage_source"][0]["object"]
        for body in functions().values()
    }
    assert objects == {"${google_storage_bucket_object.functions_source.name}"}


def test_variables_and_outputs_are_described() -> None:
    """Every variable and output of the module and its examples has a description; variables have a type."""
    folders = [MODULE, *sorted(path for path in (MODULE / "examples").iterdir() if path.is_dir())]
    for folder in folders:
        for kind in ("variable", "output"):
            for block in blocks(kind, folder):
                for name, body in block.items():
                    assert body.get("description"), (
                        f"{folder.name}: {kind} {name} has no description"
                    )
                    if kind == "variable":
                        assert "type" in body, f"{folder.name}: variable {name} has no type"


def _stack_names() -> Any:
    try:
        return importlib.import_module("local.stack_state")
    except ModuleNotFoundError:
        pytest.skip("local/stack_state.py (the names the code shares) is not written yet")


def test_topic_and_bucket_names_match_the_code() -> None:
    """Topic names equal the code's, and buckets are <prefix>-weights and <prefix>-state like the code's modeldrop-*."""
    names = _stack_names()
    topics = {name: body["name"] for name, body in of_type("google_pubsub_topic").items()}
    resolved = {
        role: local("topic_names")[ref(expression).removeprefix("local.topic_names.")]
        for role, expression in topics.items()
    }
    assert resolved == {
        "commands": names.COMMANDS_TOPIC,
        "results": names.RESULTS_TOPIC,
        "sweep": names.SWEEP_TOPIC,
        "dead_letter": names.DEAD_LETTER_TOPIC,
    }
    buckets = of_type("google_storage_bucket")
    assert buckets["weights"]["name"] == "${var.prefix}-" + names.WEIGHTS_BUCKET.removeprefix(
        "modeldrop-"
    )
    assert buckets["state"]["name"] == "${var.prefix}-" + names.STATE_BUCKET.removeprefix(
        "modeldrop-"
    )


def test_subscriptions_feed_the_function_named_for_them() -> None:
    """Each push subscription is named modeldrop-<consumer> and pushes its topic to that consumer."""
    subscriptions = of_type("google_pubsub_subscription")
    expected_topic = {
        "on_command": "commands",
        "sweep": "sweep",
        "dead_letter": "dead_letter",
        "dead_letter_answers": "dead_letter",
    }
    for name, body in subscriptions.items():
        assert body["name"] == "modeldrop-" + name.replace("_", "-")
        assert ref(body["topic"]) == f"google_pubsub_topic.{expected_topic[name]}.id"
        if "push_config" in body:
            endpoint = body["push_config"][0]["push_endpoint"]
            assert endpoint.startswith(
                f"${{google_cloudfunctions2_function.{name}.service_config[0].uri}}"
            )


LABELLED = (
    "google_storage_bucket",
    "google_pubsub_topic",
    "google_pubsub_subscription",
    FUNCTION,
    "google_artifact_registry_repository",
)


def test_labelled_resources_carry_the_managed_by_label_of_the_code() -> None:
    """Buckets, topics, subscriptions, functions and repositories carry managed-by=modeldrop as labels.py spells it."""
    merged = local("labels")
    assert f'{{"{labels.MANAGED_BY}" = "{labels.MANAGED_BY_VALUE}"}}' in merged
    unlabelled = [
        f"{kind}.{name}"
        for (kind, name), body in resources().items()
        if kind in LABELLED and body.get("labels") != "${local.labels}"
    ]
    assert not unlabelled


# The API each kind of resource (or call made by the functions) needs.
APIS = {
    "google_storage_": "storage.googleapis.com",
    "google_pubsub_": "pubsub.googleapis.com",
    "google_cloudfunctions2_": "cloudfunctions.googleapis.com",
    "google_cloud_run_": "run.googleapis.com",
    "google_cloud_scheduler_": "cloudscheduler.googleapis.com",
    "google_artifact_registry_": "artifactregistry.googleapis.com",
    "google_service_account": "iam.googleapis.com",
}


def test_every_api_the_module_and_the_functions_use_is_enabled() -> None:
    """The module enables the API behind each of its resource kinds, plus the builds, triggers, Vertex AI and Monitoring."""
    services = of_type("google_project_service")["this"]
    enabled = set(re.findall(r'"([a-z]+\.googleapis\.com)"', services["for_each"]))
    needed = {
        api for (kind, _) in resources() for prefix, api in APIS.items() if kind.startswith(prefix)
    }
    needed |= {
        "cloudbuild.googleapis.com",  # gen2 functions are built by Cloud Build
        "eventarc.googleapis.com",  # the on_upload storage trigger
        "aiplatform.googleapis.com",  # what the functions manage
        "monitoring.googleapis.com",  # what the sweep reads
    }
    assert needed <= enabled, f"not enabled: {sorted(needed - enabled)}"


def test_each_provider_is_pinned_to_the_major_whose_schema_make_test_checks() -> None:
    """required_providers allow one major each (~> X.Y), the major of the schema pinned in scripts/provider-schemas.txt."""
    pinned = {
        line.split()[2]: line.split()[3]
        for line in (ROOT / "scripts" / "provider-schemas.txt").read_text().splitlines()
        if line and not line.startswith("#")
    }
    for folder in [MODULE, MODULE / "examples" / "basic"]:
        for block in blocks("terraform", folder):
            for providers in block.get("required_providers", []):
                for name, spec in providers.items():
                    match = re.fullmatch(r"~> (\d+)\.(\d+)", spec["version"])
                    assert match, (
                        f"{folder.name}: {name} {spec['version']} spans more than one major"
                    )
                    schema_version = pinned[spec["source"]]
                    assert schema_version.split(".")[0] == match.group(1), (name, schema_version)
                    assert tuple(map(int, schema_version.split(".")[:2])) >= (
                        int(match.group(1)),
                        int(match.group(2)),
                    )


def test_service_agents_exist_before_anything_is_granted_to_them() -> None:
    """The Pub/Sub and Artifact Registry agents come from google_project_service_identity, made after the APIs."""
    identities = of_type("google_project_service_identity")["this"]
    assert "pubsub.googleapis.com" in identities["for_each"]
    assert "artifactregistry.googleapis.com" in identities["for_each"]
    assert identities["depends_on"] == ["${google_project_service.this}"]
    assert identities["provider"] == "google-beta"
    assert local("pubsub_service_agent").startswith(
        '${google_project_service_identity.this["pubsub.googleapis.com"]'
    )
    assert local("registry_service_agent").startswith(
        '${google_project_service_identity.this["artifactregistry.googleapis.com"]'
    )


def test_the_storage_trigger_waits_for_its_agents_grant_to_propagate() -> None:
    """on_upload's trigger is created after a time_sleep that follows the storage agent's publisher grant."""
    wait = of_type("time_sleep")["storage_agent_grant_propagation"]
    assert "google_project_iam_member.storage_agent_publishes_events" in str(wait["triggers"])
    assert int(wait["create_duration"].removesuffix("s")) >= 120
    (body,) = [body for body in functions().values() if entry_point(body) == "on_upload"]
    assert "${time_sleep.storage_agent_grant_propagation}" in body["depends_on"]


def test_the_deploy_notes_fall_under_the_gateways_grant() -> None:
    """The gateway reads the one object per endpoint that says a deploy is under way."""
    from modeldrop.adapters import index_name
    from modeldrop.deployment_records import DEPLOYS

    readable = state_prefixes()["gateway"]["roles/storage.objectViewer"]
    assert DEPLOYS in readable
    assert any(index_name("gemma").startswith(prefix) for prefix in readable)


def test_the_gateway_gets_its_wake_timeout_from_var_gateway() -> None:
    """MODELDROP_WAKE_TIMEOUT is var.gateway.wake_timeout, 20m by default, checked against timeout_s."""
    (body,) = [body for body in functions().values() if entry_point(body) == "gateway"]
    assert environment(body)["MODELDROP_WAKE_TIMEOUT"] == "${var.gateway.wake_timeout}"
    variable = next(block["gateway"] for block in blocks("variable") if "gateway" in block)
    assert "wake_timeout = optional(string, \"20m\")" in variable["type"]
    assert any("var.gateway.timeout_s" in str(v["condition"]) and "wake_timeout" in str(
        v["condition"]) for v in variable["validation"])
    assert "wake_timeout" in variable["description"]
