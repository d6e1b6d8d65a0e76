"""The compile cache in the bucket: saved once per key with its crc32c, restored only when intact and for this key."""

from __future__ import annotations

import json
import logging
import tarfile
from io import BytesIO
from pathlib import Path

import pytest

from serving import compile_cache
from serving.compile_cache import INNER, CacheKey, CompileCacheError, Keeper, restore, save
from serving.state_store import BucketStore, DirectoryStore
from serving.weights import crc32c_of

KEY = CacheKey({"model": "gs://w/models/m/v1", "vllm": "vllm 0.32.0", "device": "1 x H100"})
OTHER = CacheKey({**KEY.factors, "engine_options": "other"})


def make_cache(root: Path, files: dict[str, bytes] | None = None) -> Path:
    """A VLLM_CACHE_ROOT as a start leaves it: compile artifacts, model infos, and unrelated folders."""
    for name, data in (
        files
        or {
            "torch_compile_cache/torch_aot_compile/abc/rank_0_0/model": b"compiled",
            "torch_compile_cache/torch_aot_compile/abc/inductor_cache/o2/x.so": b"\x7fELF" * 100,
            "modelinfos/vllm-model_executor-models-gemma-GemmaForCausalLM.json": b"{}",
            "assets/unrelated.bin": b"not a compile artifact",
        }
    ).items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def archive_path(bucket: Path, key: CacheKey = KEY) -> Path:
    manifest = json.loads((bucket / key.manifest_name).read_text())
    return bucket / manifest["archive"]


def test_a_saved_cache_records_its_key_and_crc32c_and_restores_elsewhere(tmp_path: Path) -> None:
    """The manifest names the archive with its size and crc32c; the archive's first member is the
    key; a fresh root gets the compile artifacts and model infos back, nothing else."""
    store = DirectoryStore(tmp_path / "bucket")
    assert save(store, KEY, make_cache(tmp_path / "a"), max_bytes=10**6) == "saved"
    manifest = json.loads((tmp_path / "bucket" / KEY.manifest_name).read_text())
    archive = archive_path(tmp_path / "bucket")
    assert manifest["key"] == KEY.digest and manifest["factors"] == dict(KEY.factors)
    assert manifest["crc32c"] == crc32c_of(archive)
    assert manifest["size"] == archive.stat().st_size
    with tarfile.open(archive) as tar:
        first = tar.next()
        assert first is not None and first.name == INNER
        assert json.load(tar.extractfile(first) or BytesIO())["key"] == KEY.digest

    assert restore(store, KEY, tmp_path / "b") == "restored 3 files"
    restored = sorted(p.relative_to(tmp_path / "b").as_posix() for p in (tmp_path / "b").rglob("*"))
    assert "torch_compile_cache/torch_aot_compile/abc/rank_0_0/model" in restored
    assert "modelinfos/vllm-model_executor-models-gemma-GemmaForCausalLM.json" in restored
    assert not any(name.startswith(("assets", ".modeldrop")) for name in restored)
    so = tmp_path / "b/torch_compile_cache/torch_aot_compile/abc/inductor_cache/o2/x.so"
    assert so.read_bytes() == b"\x7fELF" * 100


def test_a_key_is_saved_once(tmp_path: Path) -> None:
    """A second save for a key already in the bucket uploads nothing."""
    store = DirectoryStore(tmp_path / "bucket")
    save(store, KEY, make_cache(tmp_path / "a"), max_bytes=10**6)
    before = sorted((tmp_path / "bucket").rglob("*"))
    make_cache(tmp_path / "a", {"torch_compile_cache/new": b"more"})
    assert save(store, KEY, tmp_path / "a", max_bytes=10**6) == "present"
    assert sorted((tmp_path / "bucket").rglob("*")) == before


def test_a_cache_over_the_bound_is_not_saved(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path / "bucket")
    with pytest.raises(CompileCacheError, match="compile-cache-max-bytes"):
        save(store, KEY, make_cache(tmp_path / "a"), max_bytes=100)
    assert not (tmp_path / "bucket").exists()


def test_no_saved_cache_restores_nothing(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path / "bucket")
    save(store, KEY, make_cache(tmp_path / "a"), max_bytes=10**6)
    assert restore(store, OTHER, tmp_path / "b") == "absent"
    assert not (tmp_path / "b").exists()


def test_a_corrupt_archive_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    """One byte changed: the crc32c disagrees with the manifest; no file lands in the root."""
    store = DirectoryStore(tmp_path / "bucket")
    save(store, KEY, make_cache(tmp_path / "a"), max_bytes=10**6)
    archive = archive_path(tmp_path / "bucket")
    data = bytearray(archive.read_bytes())
    data[-2000] ^= 0xFF
    archive.write_bytes(bytes(data))
    with pytest.raises(CompileCacheError, match="crc32c"):
        restore(store, KEY, tmp_path / "b")
    assert [p.name for p in (tmp_path / "b").rglob("*")] == []


def test_an_archive_made_for_another_key_is_refused(tmp_path: Path) -> None:
    """Another key's archive under this key's name (crc intact) is caught by the key inside it."""
    bucket = tmp_path / "bucket"
    store = DirectoryStore(bucket)
    save(store, OTHER, make_cache(tmp_path / "a"), max_bytes=10**6)
    manifest = json.loads((bucket / OTHER.manifest_name).read_text())
    moved = manifest["archive"].replace(OTHER.digest, KEY.digest)
    store.write_file(moved, bucket / manifest["archive"])
    (bucket / KEY.manifest_name).write_text(
        json.dumps({**manifest, "key": KEY.digest, "archive": moved})
    )
    with pytest.raises(CompileCacheError, match="made for key"):
        restore(store, KEY, tmp_path / "b")
    (bucket / KEY.manifest_name).write_text(json.dumps(manifest))
    with pytest.raises(CompileCacheError, match="records key"):
        restore(store, KEY, tmp_path / "b")
    assert not (tmp_path / "b" / "torch_compile_cache").exists()


@pytest.mark.parametrize(
    "name", ["../escape", "assets/x", "/etc/passwd", "torch_compile_cache/../x"]
)
def test_an_archive_holding_other_paths_is_refused(tmp_path: Path, name: str) -> None:
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        for member, data in ((INNER, json.dumps({"key": KEY.digest}).encode()), (name, b"x")):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, BytesIO(data))
    store = DirectoryStore(tmp_path / "bucket")
    store.write_file(f"compile-cache/{KEY.digest}/evil.tar", archive)
    manifest = {"key": KEY.digest, "archive": f"compile-cache/{KEY.digest}/evil.tar"}
    manifest |= {"size": archive.stat().st_size, "crc32c": crc32c_of(archive)}
    store.write(KEY.manifest_name, json.dumps(manifest).encode())
    with pytest.raises(CompileCacheError, match="outside what it may hold"):
        restore(store, KEY, tmp_path / "root")
    assert not (tmp_path / "x").exists() and not (tmp_path / "escape").exists()


def test_a_manifest_naming_another_object_is_refused(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path / "bucket")
    save(store, KEY, make_cache(tmp_path / "a"), max_bytes=10**6)
    manifest = json.loads((tmp_path / "bucket" / KEY.manifest_name).read_text())
    for name in (f"compile-cache/{KEY.digest}/../../serving-args/x.json", "activity/a.json"):
        store.write(KEY.manifest_name, json.dumps({**manifest, "archive": name}).encode())
        with pytest.raises(CompileCacheError, match="not one of its archives"):
            restore(store, KEY, tmp_path / "b")


def test_the_keeper_turns_problems_into_warnings(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A corrupt manifest, or a key that can't be computed, is a warning: the start goes on."""
    store = DirectoryStore(tmp_path / "bucket")
    store.write(KEY.manifest_name, b"not json")
    with caplog.at_level(logging.WARNING, logger="serving.compile_cache"):
        assert Keeper(store, lambda: KEY, tmp_path / "root", 10**6).restore() == "ignored"

        def no_key() -> CacheKey:
            raise OSError("unreadable")

        broken = Keeper(store, no_key, tmp_path / "root", 10**6)
        assert broken.restore() == "ignored"
        assert broken.save_in_background() is None  # no key: nothing to save under
    assert [r.getMessage() for r in caplog.records] == [
        "compile cache not restored: the engine compiles from scratch"
    ] * 2


def test_the_keeper_saves_in_a_daemon_thread(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path / "bucket")
    keeper = Keeper(store, lambda: KEY, make_cache(tmp_path / "a"), 10**6)
    assert keeper.restore() == "absent"
    thread = keeper.save_in_background()
    assert thread is not None and thread.daemon
    thread.join(timeout=30)
    assert (tmp_path / "bucket" / KEY.manifest_name).is_file()


def test_the_bucket_store_moves_files_through_gcs(gcs_host: str, tmp_path: Path) -> None:
    """Save and restore through fake-gcs-server, as on Google Cloud."""
    from google.cloud import storage

    storage.Client(project="modeldrop-test").create_bucket("state-compile-cache")
    store = BucketStore("state-compile-cache")
    assert save(store, KEY, make_cache(tmp_path / "a"), max_bytes=10**6) == "saved"
    assert save(store, KEY, tmp_path / "a", max_bytes=10**6) == "present"
    assert restore(store, KEY, tmp_path / "b") == "restored 3 files"
    assert store.read_file("compile-cache/missing.tar", tmp_path / "missing") is False
    assert compile_cache.PREFIX == "compile-cache/"
