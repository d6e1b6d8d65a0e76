"""on_upload's logic over the wire: uploads in any order, duplicates, manifests, rejections, deploy policies."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import google_crc32c
import pytest
from functions.world import CONFIG, World, make_world, sound_files

from modeldrop.errors import ConflictError
from modeldrop.events import StorageObject
from modeldrop.layout import DEPLOY_POLICY_NAME, MANIFEST_NAME, UPLOAD_METADATA_KEY
from modeldrop.results import Status
from modeldrop.uploads import on_object

pytestmark = pytest.mark.stack


def event(world: World, model: str, version: str, name: str, generation: int = 1) -> StorageObject:
    return StorageObject(
        bucket=world.settings.weights_bucket,
        name=f"models/{model}/{version}/{name}",
        generation=generation,
    )


def crc(data: bytes) -> str:
    return base64.b64encode(google_crc32c.Checksum(data).digest()).decode()


def test_a_plain_copy_in_any_order_registers_once(vertex_url: str) -> None:
    """Files arriving in reverse order, each event delivered twice, register the version exactly once."""
    world = make_world(vertex_url)
    now = datetime.now(UTC)
    outcomes = []
    for name, data in reversed(list(sound_files().items())):
        world.put("gemma-tiny", "v1", name, data)
        outcomes.append(on_object(event(world, "gemma-tiny", "v1", name), world.ctx, now))
        outcomes.append(on_object(event(world, "gemma-tiny", "v1", name), world.ctx, now))
    registered = [o for o in outcomes if o is not None]
    assert [r.status for r in registered] == [Status.REGISTERED]
    assert registered[0].details["aliases"] == ["v1", "latest"]
    published = world.results(until=lambda rs: len(rs) >= 1)
    assert [(r.request_id, r.status) for r in published] == [
        (registered[0].request_id, Status.REGISTERED)
    ]
    version = world.ctx.vertex.model_version("gemma-tiny", "latest")
    assert version is not None and version.labels["modeldrop-version"] == "v1"


def test_latest_moves_and_digit_folders_get_a_letter_alias(vertex_url: str) -> None:
    """A second version folder named "2" becomes alias v2 and takes `latest`."""
    world = make_world(vertex_url)
    now = datetime.now(UTC)
    for version in ("v1", "2"):
        for name, data in sound_files().items():
            world.put("two-versions", version, name, data)
        assert (
            on_object(event(world, "two-versions", version, "config.json"), world.ctx, now)
            is not None
        )
    latest = world.ctx.vertex.model_version("two-versions", "latest")
    assert latest is not None and set(latest.aliases) == {"v2", "latest"}
    first = world.ctx.vertex.model_version("two-versions", "v1")
    assert first is not None and "latest" not in first.aliases


def test_a_manifest_names_the_request_and_is_checked_against_the_bucket(vertex_url: str) -> None:
    """With a manifest, the result carries its request_id; a size or crc32c mismatch is rejected with reasons."""
    world = make_world(vertex_url)
    now = datetime.now(UTC)
    files = sound_files()
    entries = [{"name": n, "size": len(d), "crc32c": crc(d)} for n, d in files.items()]
    entries[0] = {**entries[0], "crc32c": crc(b"something else")}
    for name, data in files.items():
        world.put("gemma-tiny", "bad", name, data)
    manifest = {
        "model": "gemma-tiny",
        "version": "bad",
        "request_id": "cli-upload-1",
        "files": entries,
    }
    world.put("gemma-tiny", "bad", MANIFEST_NAME, json.dumps(manifest).encode())
    result = on_object(event(world, "gemma-tiny", "bad", MANIFEST_NAME), world.ctx, now)
    assert (
        result is not None
        and result.status is Status.REJECTED
        and result.request_id == "cli-upload-1"
    )
    assert any("crc32c" in reason for reason in result.reasons)
    assert on_object(event(world, "gemma-tiny", "bad", MANIFEST_NAME), world.ctx, now) is None


def test_a_manifest_before_its_files_waits_for_them(vertex_url: str) -> None:
    """A manifest copied before the files it lists registers only when the last file lands."""
    world = make_world(vertex_url)
    now = datetime.now(UTC)
    files = sound_files()
    entries = [{"name": n, "size": len(d), "crc32c": crc(d)} for n, d in files.items()]
    world.put(
        "waiter",
        "v1",
        MANIFEST_NAME,
        json.dumps(
            {"model": "waiter", "version": "v1", "request_id": "cli-2", "files": entries}
        ).encode(),
    )
    assert on_object(event(world, "waiter", "v1", MANIFEST_NAME), world.ctx, now) is None
    results = []
    for name, data in files.items():
        world.put("waiter", "v1", name, data)
        results.append(on_object(event(world, "waiter", "v1", name), world.ctx, now))
    assert results[:-1] == [None, None]
    assert results[-1] is not None and (results[-1].request_id, results[-1].status) == (
        "cli-2",
        Status.REGISTERED,
    )


def test_a_bad_folder_is_rejected_with_every_reason(vertex_url: str) -> None:
    """Pickle weights, remote code and an unknown architecture are all named in one rejected result."""
    world = make_world(vertex_url)
    now = datetime.now(UTC)
    files = sound_files({**CONFIG, "architectures": ["MadeUpForCausalLM"], "auto_map": {"x": "y"}})
    files["pytorch_model.bin"] = b"pickle"
    for name, data in files.items():
        world.put("bad-folder", "v1", name, data)
    result = on_object(event(world, "bad-folder", "v1", "config.json"), world.ctx, now)
    assert result is not None and result.status is Status.REJECTED
    text = "\n".join(result.reasons)
    assert "pickle" in text and "auto_map" in text and "MadeUpForCausalLM" in text
    assert world.ctx.vertex.model_version("bad-folder", "v1") is None


def test_a_deploy_policy_publishes_a_deploy_command(vertex_url: str) -> None:
    """A policy file in the folder becomes a deploy command for the new version, keyed on the upload."""
    world = make_world(vertex_url)
    world.put(
        "with-policy",
        "v1",
        DEPLOY_POLICY_NAME,
        json.dumps({"accelerator": None, "idle_ttl": "10m"}).encode(),
    )
    for name, data in sound_files().items():
        world.put("with-policy", "v1", name, data)
    result = on_object(
        event(world, "with-policy", "v1", "model.safetensors"), world.ctx, datetime.now(UTC)
    )
    assert result is not None and result.status is Status.REGISTERED
    commands = world.commands()
    assert [(c["action"], c["model"], c["version"], c["idle_ttl"]) for c in commands] == [
        ("deploy", "with-policy", "v1", "10m")
    ]
    assert commands[0]["request_id"] == result.details["deploy_request_id"]


def test_objects_outside_the_layout_are_ignored(vertex_url: str) -> None:
    """An object elsewhere in the bucket is no upload: nothing is registered or published."""
    world = make_world(vertex_url)
    other = StorageObject(
        bucket=world.settings.weights_bucket, name="notes/readme.txt", generation=1
    )
    assert on_object(other, world.ctx, datetime.now(UTC)) is None
    assert world.results(timeout_s=0.5) == []


def test_files_the_cli_uploads_wait_for_its_manifest(vertex_url: str) -> None:
    """Files carrying the CLI's metadata don't register as a plain copy: the manifest completes the upload, once."""
    world = make_world(vertex_url)
    now = datetime.now(UTC)
    files = sound_files()
    for name, data in files.items():
        world.put("by-cli", "v1", name, data, metadata={UPLOAD_METADATA_KEY: "cli-3"})
        assert on_object(event(world, "by-cli", "v1", name), world.ctx, now) is None
    entries = [{"name": n, "size": len(d), "crc32c": crc(d)} for n, d in files.items()]
    manifest = {"model": "by-cli", "version": "v1", "request_id": "cli-3", "files": entries}
    world.put("by-cli", "v1", MANIFEST_NAME, json.dumps(manifest).encode())
    result = on_object(event(world, "by-cli", "v1", MANIFEST_NAME), world.ctx, now)
    assert result is not None and (result.request_id, result.status) == ("cli-3", Status.REGISTERED)
    assert [(r.request_id, r.status) for r in world.results(until=lambda rs: len(rs) >= 1)] == [
        ("cli-3", Status.REGISTERED)
    ]


def test_concurrent_events_of_a_bad_folder_publish_one_rejection(vertex_url: str) -> None:
    """Four events of one bad folder handled at once: one `rejected`; the others retry (ConflictError) or find it done."""
    from concurrent.futures import ThreadPoolExecutor

    world = make_world(vertex_url)
    files = {**sound_files(), "weights.pkl": b"\x80\x04"}
    for name, data in files.items():
        world.put("bad-at-once", "v1", name, data)
    names = list(files)

    def handle(name: str) -> str:
        try:
            result = on_object(
                event(world, "bad-at-once", "v1", name), world.ctx, datetime.now(UTC)
            )
        except ConflictError:
            return "retry"
        return "none" if result is None else result.status.value

    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        outcomes = list(pool.map(handle, names))
    for name in names:  # the redeliveries of those that were told to retry
        assert (
            on_object(event(world, "bad-at-once", "v1", name), world.ctx, datetime.now(UTC)) is None
        )
    assert outcomes.count("rejected") == 1
    published = world.results(until=lambda rs: len(rs) >= 1, timeout_s=3)
    assert [r.status for r in published] == [Status.REJECTED]
