"""terraform/ and its examples match the real provider schemas (offline, from pinned published bindings)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "terraform"
FOLDERS = [MODULE, *sorted(path for path in (MODULE / "examples").iterdir() if path.is_dir())]


@cache
def checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "provider_schema", ROOT / "scripts" / "provider_schema.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@cache
def schemas() -> tuple[dict[str, Any], ...]:
    """The pinned schemas, built once into the cache outside the repo (scripts/provider_schemas.sh)."""
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "provider_schemas.sh")],
        capture_output=True,
        text=True,
        timeout=540,
        env={**os.environ, "PYTHON": sys.executable},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    paths = result.stdout.split()
    assert len(paths) == 4, result.stdout
    return tuple(json.loads(Path(path).read_text()) for path in paths)


def test_the_schemas_are_the_pinned_provider_versions() -> None:
    """Each schema names the provider version its binding was generated from, and holds that provider's types."""
    found = {schema["provider"]: schema for schema in schemas()}
    assert set(found) == {
        "hashicorp/google",
        "hashicorp/google-beta",
        "hashicorp/time",
        "hashicorp/archive",
    }
    google = found["hashicorp/google"]
    assert google["version"].split(".")[0] == "8"
    function = google["resources"]["google_cloudfunctions2_function"]
    assert function["attributes"]["location"] == "required"
    assert function["blocks"]["service_config"]["attributes"]["uri"] == "computed"
    assert "google_project_service_identity" in found["hashicorp/google-beta"]["resources"]
    assert "time_sleep" in found["hashicorp/time"]["resources"]


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_type_argument_block_and_reference_is_in_the_provider_schema(folder: Path) -> None:
    """Every resource and data source type, argument, block, required argument and attribute reference checks out."""
    problems = checker().check(folder, list(schemas()))
    assert not problems, "\n".join(problems)


def _copy_with(tmp_path: Path, file: str, old: str, new: str) -> Path:
    copy = tmp_path / "terraform"
    shutil.copytree(MODULE, copy, ignore=shutil.ignore_patterns(".terraform", "examples"))
    text = (copy / file).read_text()
    assert old in text
    (copy / file).write_text(text.replace(old, new, 1))
    return copy


@pytest.mark.parametrize(
    ("file", "old", "new", "expected"),
    [
        ("functions.tf", "entry_point", "entry_pont", "unsupported argument or block 'entry_pont'"),
        ("functions.tf", "storage_source {", "storage_sourc {", "'storage_sourc'"),
        (
            "storage.tf",
            "uniform_bucket_level_access",
            "uniform_bucket_access",
            "'uniform_bucket_access'",
        ),
        (
            "pubsub.tf",
            "google_service_account.invoker.email",
            "google_service_account.invoker.emial",
            "no attribute 'emial'",
        ),
        ("iam.tf", '  role_id     = "modeldropDeployer"\n', "", "'role_id' is required"),
        (
            "main.tf",
            'resource "google_project_service"',
            'resource "google_project_servise"',
            "no resource type",
        ),
    ],
)
def test_a_misspelled_or_missing_argument_is_caught(
    tmp_path: Path, file: str, old: str, new: str, expected: str
) -> None:
    """A typo in an argument, block, reference or type, or a missing required argument, is reported."""
    problems = checker().check(_copy_with(tmp_path, file, old, new), list(schemas()))
    assert any(expected in problem for problem in problems), problems
