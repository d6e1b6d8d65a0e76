"""Every folder under models/ ends in one result: bad headers, names Vertex refuses, misplaced,
abandoned and refused-at-once uploads, Vertex's own refusals, and adapters."""

from __future__ import annotations

import base64
import json
import struct
from datetime import UTC, datetime, timedelta

import google_crc32c
import httpx
import pytest
from functions.world import CONFIG, World, make_world, sound_files
from support.builders import make_safetensors
from support.names import PROJECT

from modeldrop.adapters import indexed, record_name
from modeldrop.events import StorageObject
from modeldrop.layout import MANIFEST_NAME, UPLOAD_METADATA_KEY
from modeldrop.results import Result, Status
from modeldrop.uploads import judge_pending, on_object

pytestmark = pytest.mark.stack
GARBAGE = struct.pack("<Q", 64) + bytes(range(64)) + bytes(32)


def put(
    world: World, name: str, data: bytes, metadata: dict[str, str] | None = None
) -> StorageObject:
    """Write any object into the weights bucket; the storage event it would raise."""
    from google.cloud import storage

    blob = storage.Client(project=PROJECT).bucket(world.settings.weights_bucket).blob(name)
    blob.metadata = metadata
    blob.upload_from_string(data)
    return StorageObject(
        bucket=world.settings.weights_bucket, name=name, generation=int(blob.generation)
    )


def copy(world: World, prefix: str, files: dict[str, bytes]) -> list[Result | None]:
    """A plain copy: each file written, then its event handled."""
    now = datetime.now(UTC)
    return [
        on_object(put(world, prefix + name, data), world.ctx, now) for name, data in files.items()
    ]


def crc(data: bytes) -> str:
    return base64.b64encode(google_crc32c.Checksum(data).digest()).decode()


def only(results: list[Result | None]) -> Result:
    found = [r for r in results if r is not None]
    assert len(found) == 1, found
    return found[0]


@pytest.mark.parametrize("with_manifest", [False, True])
def test_a_garbage_safetensors_file_is_rejected_not_registered(
    vertex_url: str, with_manifest: bool
) -> None:
    """Random bytes behind a plausible header length are refused, with and without a manifest."""
    world = make_world(vertex_url)
    files = {**sound_files(), "model.safetensors": GARBAGE}
    if with_manifest:
        entries = [{"name": n, "size": len(d), "crc32c": crc(d)} for n, d in files.items()]
        manifest = {"model": "junk", "version": "v1", "files": entries}
        files = {MANIFEST_NAME: json.dumps(manifest).encode(), **files}  # a manifest first waits
    result = only(copy(world, "models/junk/v1/", files))
    assert result.status is Status.REJECTED
    assert "model.safetensors is not safetensors" in " ".join(result.reasons)
    assert world.ctx.vertex.model_version("junk", "v1") is None


def test_offsets_past_the_end_of_a_shard_are_rejected(vertex_url: str) -> None:
    """A header promising more bytes than the file holds names the file."""
    world = make_world(vertex_url)
    short = make_safetensors({"w": [64]})[:-16]
    result = only(copy(world, "models/short/v1/", {**sound_files(), "model.safetensors": short}))
    assert result.status is Status.REJECTED and "past the end" in " ".join(result.reasons)


@pytest.mark.parametrize(
    ("model", "version", "expected"),
    [
        ("gemma", "latest", "reserved"),
        ("gemma", "default", "reserved"),
        ("7b-chat", "v1", "model name"),
        ("Gemma", "v1", "model name"),
        ("gemma", "V1", "version"),
    ],
)
def test_names_vertex_refuses_end_rejected_once_per_folder(
    vertex_url: str, model: str, version: str, expected: str
) -> None:
    """A folder named against Vertex's rules gets one `rejected` result however many files land."""
    world = make_world(vertex_url)
    result = only(copy(world, f"models/{model}/{version}/", sound_files()))
    assert result.status is Status.REJECTED and expected in " ".join(result.reasons).lower()
    published = world.results(until=lambda rs: len(rs) >= 1, timeout_s=3)
    assert [r.request_id for r in published] == [result.request_id]


def test_a_folder_copied_one_level_too_deep_is_rejected_once(vertex_url: str) -> None:
    """models/<model>/<version>/<folder>/<file> is reported once, naming the mistake."""
    world = make_world(vertex_url)
    result = only(copy(world, "models/gemma/v1/gemma-2b/", sound_files()))
    assert result.status is Status.REJECTED and "one level too deep" in result.reasons[0]
    assert result.details["folder"].endswith("models/gemma/v1/gemma-2b/")


def test_objects_outside_models_stay_ignored(vertex_url: str) -> None:
    """Objects outside models/ are not modeldrop's: no result."""
    world = make_world(vertex_url)
    assert copy(world, "elsewhere/", sound_files()) == [None, None, None]


def test_pickle_weights_are_refused_at_once_not_after_the_wait(vertex_url: str) -> None:
    """A plain copy holding pickle weights is rejected when the pickle lands, before it is complete."""
    world = make_world(vertex_url)
    results = copy(
        world,
        "models/pickled/v1/",
        {"config.json": json.dumps(CONFIG).encode(), "pytorch_model.bin": b"\x80\x04."},
    )
    assert results[0] is None
    assert results[1] is not None and results[1].status is Status.REJECTED
    assert (
        "pickle" in " ".join(results[1].reasons)
        and "model.safetensors is missing" in results[1].reasons
    )
    more = copy(world, "models/pickled/v1/", {"tokenizer.json": b"{}"})
    assert more == [None]  # the same copy: no second result


def test_an_abandoned_plain_copy_is_rejected_by_the_sweep_naming_what_is_missing(
    vertex_url: str,
) -> None:
    """A copy without its weights waits; after the upload wait the sweep rejects it, once."""
    world = make_world(vertex_url, upload_wait="10m")
    files = sound_files()
    files.pop("model.safetensors")
    assert copy(world, "models/partial/v1/", files) == [None, None]
    assert judge_pending(world.ctx, datetime.now(UTC)) == ([], [])  # still within the wait
    later = datetime.now(UTC) + timedelta(minutes=11)
    results, problems = judge_pending(world.ctx, later)
    assert problems == [] and len(results) == 1
    assert (
        results[0].status is Status.REJECTED
        and "model.safetensors is missing" in results[0].reasons
    )
    assert "MODELDROP_UPLOAD_WAIT" in results[0].reasons[-1]
    assert judge_pending(world.ctx, later) == ([], [])  # the marker is gone with the result


def test_a_folder_whose_last_notification_was_lost_registers_from_the_sweep(
    vertex_url: str,
) -> None:
    """The sweep judges noted folders again: a completed folder registers without its event."""
    world = make_world(vertex_url)
    files = sound_files()
    assert copy(world, "models/quiet/v1/", {"config.json": files.pop("config.json")}) == [None]
    for name, data in files.items():
        put(world, f"models/quiet/v1/{name}", data)  # no event handled
    results, _ = judge_pending(world.ctx, datetime.now(UTC))
    assert [r.status for r in results] == [Status.REGISTERED]


def test_an_unfinished_cli_upload_is_rejected_after_the_wait(vertex_url: str) -> None:
    """Files the CLI uploaded without its manifest: after the wait, `rejected` says to resume."""
    world = make_world(vertex_url, upload_wait="1m")
    meta = {UPLOAD_METADATA_KEY: "cli-gone"}
    now = datetime.now(UTC)
    for name, data in sound_files().items():
        assert on_object(put(world, f"models/cli/v1/{name}", data, meta), world.ctx, now) is None
    results, _ = judge_pending(world.ctx, now + timedelta(minutes=2))
    assert [r.status for r in results] == [Status.REJECTED]
    assert "resume" in results[0].reasons[0]


def test_a_manifest_whose_files_never_arrive_is_rejected_naming_them(vertex_url: str) -> None:
    """The manifest waits for its files; after the wait the missing ones are named."""
    world = make_world(vertex_url, upload_wait="1m")
    files = sound_files()
    entries = [{"name": n, "size": len(d), "crc32c": crc(d)} for n, d in files.items()]
    manifest = {"model": "lost", "version": "v1", "request_id": "cli-lost", "files": entries}
    files.pop("tokenizer.json")
    assert set(
        copy(world, "models/lost/v1/", {**files, MANIFEST_NAME: json.dumps(manifest).encode()})
    ) == {None}
    results, _ = judge_pending(world.ctx, datetime.now(UTC) + timedelta(minutes=2))
    assert [(r.request_id, r.status) for r in results] == [("cli-lost", Status.REJECTED)]
    assert "tokenizer.json is in the manifest but not in the bucket" in results[0].reasons


def test_a_refusal_from_vertex_itself_ends_rejected_with_its_reason(vertex_url: str) -> None:
    """Where modeldrop can't know Vertex's rule, Vertex's 400 on the upload becomes `rejected`."""
    world = make_world(vertex_url)
    faults = {"rules": [{"method": "UploadModel", "rate": 1.0, "code": 400}]}
    httpx.put(f"{vertex_url}/emulator/faults", json=faults).raise_for_status()
    try:
        result = only(copy(world, "models/refused/v1/", sound_files()))
    finally:
        httpx.delete(f"{vertex_url}/emulator/faults")
    assert result.status is Status.REJECTED and result.message == "Vertex AI refused the version"
    assert world.ctx.state.request(result.request_id) is not None


def test_a_fault_reading_the_new_version_back_is_retried_not_left_to_the_sweep(
    vertex_url: str,
) -> None:
    """Vertex's 429/500 on the GetModel after the upload is a TransientError (redelivered), like
    every other call's; the redelivery polls the recorded operation and registers once."""
    from modeldrop.errors import TransientError
    from modeldrop.layout import VersionFolder
    from modeldrop.registry import model_spec

    world = make_world(vertex_url)
    spec = model_spec(VersionFolder("w", "readback", "v1"), world.settings, "d")
    operation = world.ctx.vertex.register(spec)
    faults = {"rules": [{"method": "GetModel", "rate": 1.0, "code": 429}]}
    httpx.put(f"{vertex_url}/emulator/faults", json=faults).raise_for_status()
    try:
        with pytest.raises(TransientError, match="reading registered version"):
            world.ctx.vertex.finish_register(operation)
    finally:
        httpx.delete(f"{vertex_url}/emulator/faults")
    assert world.ctx.vertex.finish_register(operation).version_id == "1"


def adapter_files(rank: int = 8, width: int = 64, **config: object) -> dict[str, bytes]:
    settings = {"peft_type": "LORA", "r": rank, "base_model_name_or_path": "tiny", **config}
    tensors = {
        "base_model.model.layers.0.self_attn.q_proj.lora_A.weight": [rank, width],
        "base_model.model.layers.0.self_attn.q_proj.lora_B.weight": [width, rank],
    }
    return {
        "adapter_config.json": json.dumps(settings).encode(),
        "adapter_model.safetensors": make_safetensors(tensors),
    }


def registered_base(world: World) -> None:
    config = {**CONFIG, "hidden_size": 64, "num_attention_heads": 1, "intermediate_size": 128}
    assert only(copy(world, "models/base/v1/", sound_files(config))).status is Status.REGISTERED


def test_an_adapter_is_validated_and_recorded_for_serving(vertex_url: str) -> None:
    """A LoRA adapter that fits the base model is recorded with every file's size and crc32c."""
    world = make_world(vertex_url)
    registered_base(world)
    result = only(copy(world, "models/base/adapters/sql/", adapter_files()))
    assert (result.action, result.status) == ("adapter", Status.REGISTERED)
    found = world.ctx.storage.read(world.settings.state_bucket, record_name("base", "sql"))
    assert found is not None
    record = json.loads(found.data)
    assert (record["name"], record["rank"]) == ("sql", 8)
    assert record["modules"] == ["q_proj"]  # from the header: serving checks its target modules
    assert {f["name"] for f in record["files"]} == {
        "adapter_config.json",
        "adapter_model.safetensors",
    }
    assert indexed(world.ctx, "base") == ["sql"]  # what the gateway's /v1/models lists
    only(copy(world, "models/base/adapters/chat/", adapter_files()))
    assert indexed(world.ctx, "base") == ["chat", "sql"]


def test_the_sweep_makes_each_adapter_index_name_exactly_the_recorded_adapters(
    vertex_url: str,
) -> None:
    """An adapter recorded before indexes existed is listed after the next sweep; one whose record
    a person deleted is dropped; an index already right is not written again."""
    from modeldrop.adapters import index_name, repair_indexes
    from modeldrop.sweeper import sweep

    world = make_world(vertex_url)
    registered_base(world)
    only(copy(world, "models/base/adapters/sql/", adapter_files()))
    bucket = world.settings.state_bucket
    world.ctx.storage.delete(bucket, index_name("base"))  # as before indexes existed
    old = world.ctx.storage.read(bucket, record_name("base", "sql"))
    assert old is not None
    world.ctx.storage.write(bucket, record_name("other", "chat"), old.data)
    summary = sweep(world.ctx, datetime.now(UTC))
    assert summary.adapter_indexes_repaired == ["base", "other"]
    assert (indexed(world.ctx, "base"), indexed(world.ctx, "other")) == (["sql"], ["chat"])
    world.ctx.storage.delete(bucket, record_name("other", "chat"))
    assert repair_indexes(world.ctx) == ["other"]
    assert indexed(world.ctx, "other") == []
    assert repair_indexes(world.ctx) == []


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"adapter_model.bin": b"\x80", **adapter_files()}, "pickle"),
        (adapter_files(rank=1024), "rank"),
        (adapter_files(width=48), "expected [8, a width of base]"),
        (adapter_files(peft_type="IA3"), "only LORA"),
        ({**adapter_files(), "adapter_model.safetensors": GARBAGE}, "not safetensors"),
    ],
)
def test_a_bad_adapter_is_rejected_and_never_recorded(
    vertex_url: str, files: dict[str, bytes], expected: str
) -> None:
    """Pickle, too large a rank, a wrong base, another PEFT type or a bad header: `rejected`, no record."""
    world = make_world(vertex_url)
    registered_base(world)
    result = only(copy(world, "models/base/adapters/bad/", files))
    assert result.status is Status.REJECTED and expected in " ".join(result.reasons)
    assert world.ctx.storage.read(world.settings.state_bucket, record_name("base", "bad")) is None
    assert indexed(world.ctx, "base") == []


def test_an_adapter_without_a_base_model_is_rejected(vertex_url: str) -> None:
    """An adapter of a model never registered says to upload the weights first."""
    world = make_world(vertex_url)
    result = only(copy(world, "models/nobase/adapters/a/", adapter_files()))
    assert result.status is Status.REJECTED and "upload its weights first" in result.reasons[0]


def test_an_adapter_missing_its_config_is_rejected_after_the_wait(vertex_url: str) -> None:
    """Weights without adapter_config.json wait, then the sweep rejects them naming the file."""
    world = make_world(vertex_url, upload_wait="1m")
    files = adapter_files()
    files.pop("adapter_config.json")
    assert copy(world, "models/base/adapters/half/", files) == [None]
    results, _ = judge_pending(world.ctx, datetime.now(UTC) + timedelta(minutes=2))
    assert [r.status for r in results] == [Status.REJECTED]
    assert "adapter_config.json is missing" in results[0].reasons


def test_overwriting_a_registered_version_is_reported_loudly(
    vertex_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A registered file replaced in the bucket: `rejected` saying so, and an ERROR line."""
    world = make_world(vertex_url)
    assert only(copy(world, "models/frozen/v1/", sound_files())).status is Status.REGISTERED
    with caplog.at_level("ERROR"):
        again = copy(
            world, "models/frozen/v1/", {"model.safetensors": make_safetensors({"x": [3]})}
        )
    result = only(again)
    assert (
        result.status is Status.REJECTED and "overwritten after registration" in result.reasons[0]
    )
    assert any("no longer matches its files" in r.getMessage() for r in caplog.records)
