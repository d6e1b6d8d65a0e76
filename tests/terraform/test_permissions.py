"""Every permission terraform grants exists in Google's published list, and is the call its table says."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from terraform.test_structure import grants, of_type

ROOT = Path(__file__).resolve().parents[2]
PUBLISHED = Path(__file__).parent / "data" / "gcp_permissions.json"
README = ROOT / "terraform" / "README.md"
ROW = re.compile(r"^\| (?P<role>\w+) \| (?P<permission>[a-zA-Z]+\.[a-zA-Z.]+) \| ", re.M)


@cache
def published() -> dict[str, Any]:
    return json.loads(PUBLISHED.read_text())


def custom_roles() -> dict[str, set[str]]:
    return {
        name: set(body["permissions"])
        for name, body in of_type("google_project_iam_custom_role").items()
    }


def unknown(permissions: set[str]) -> set[str]:
    """Permissions of the snapshot's services that no published role includes (Vertex refuses them)."""
    known = set(published()["permissions"])
    covered = tuple(published()["services"])
    assert all(permission.startswith(covered) for permission in permissions), permissions
    return permissions - known


@pytest.mark.parametrize("role", sorted(custom_roles()))
def test_every_custom_role_permission_is_published(role: str) -> None:
    """Each permission of each custom role is one Google publishes (IAM refuses a role naming any other)."""
    assert not unknown(custom_roles()[role])


def test_the_check_catches_a_permission_google_does_not_have() -> None:
    """aiplatform.operations.get (which broke apply) and a misspelling are refused; operations.list is known."""
    assert unknown({"aiplatform.operations.get", "aiplatform.endpoints.predcit"}) == {
        "aiplatform.operations.get",
        "aiplatform.endpoints.predcit",
    }
    assert not unknown({"aiplatform.operations.list", "monitoring.timeSeries.list"})


def test_custom_roles_equal_the_permissions_table() -> None:
    """terraform/README.md maps each custom role's permissions to calls: table and iam.tf hold the same set."""
    table: dict[str, set[str]] = {}
    for row in ROW.finditer(README.read_text()):
        if row.group("role") in custom_roles():
            table.setdefault(row.group("role"), set()).add(row.group("permission"))
    assert table == custom_roles()


def test_the_sweep_reads_metrics_with_one_permission_not_monitoring_viewer() -> None:
    """monitoring.viewer's published permissions are many; the sweep's metrics role is timeSeries.list alone."""
    assert len(published()["roles"]["roles/monitoring.viewer"]) > 1
    assert custom_roles()["metrics_reader"] == {"monitoring.timeSeries.list"}
    assert "roles/monitoring.viewer" not in {grant["role"] for grant in grants()}


def test_every_predefined_role_granted_is_published() -> None:
    """Each roles/... that terraform grants (directly or in a for_each) is a published predefined role."""
    text = "\n".join(path.read_text() for path in sorted((ROOT / "terraform").glob("*.tf")))
    granted = set(re.findall(r'"(roles/[\w.]+)"', text))
    assert granted
    assert granted <= set(published()["roles"]), sorted(granted - set(published()["roles"]))


def test_writers_of_existing_objects_can_delete_the_old_generation() -> None:
    """A rewrite needs storage.objects.delete: objectUser (granted for activity/ and wakes/) has it, objectCreator not."""
    roles = published()["roles"]
    assert {"storage.objects.create", "storage.objects.delete", "storage.objects.get"} <= set(
        roles["roles/storage.objectUser"]
    )
    assert "storage.objects.delete" not in roles["roles/storage.objectCreator"]
