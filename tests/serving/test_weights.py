"""Weights from a folder or from gs:// (fake-gcs-server): downloaded in parallel, verified, refused when unsafe."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from serving.weights import (
    MANIFEST_NAME,
    RemoteFile,
    WeightsError,
    check_folder,
    crc32c_of,
    download,
    prepare,
    split_gs_uri,
    verify_file,
)


def _upload(folder: Path, bucket_name: str, prefix: str) -> None:
    from google.cloud import storage

    client = storage.Client(project="modeldrop-test")
    bucket = client.bucket(bucket_name)
    if not bucket.exists():
        client.create_bucket(bucket_name)
    for path in sorted(folder.iterdir()):
        bucket.blob(f"{prefix}/{path.name}").upload_from_filename(str(path))


def _manifest(folder: Path) -> bytes:
    files = [
        {"name": p.name, "size": p.stat().st_size, "crc32c": crc32c_of(p)}
        for p in sorted(folder.iterdir())
    ]
    return json.dumps({"model": "tiny", "version": "v1", "files": files}).encode()


def test_gs_folder_is_downloaded_and_verified(
    gcs_host: str, tiny_model: Path, tmp_path: Path
) -> None:
    """Every object of the gs:// folder lands in the cache, byte-identical, and passes the checks."""
    _upload(tiny_model, "weights-ok", "models/tiny/v1")
    folder = prepare("gs://weights-ok/models/tiny/v1", tmp_path / "cache", workers=4)
    for path in tiny_model.iterdir():
        assert (folder / path.name).read_bytes() == path.read_bytes()
    assert not list(folder.glob("*.partial"))


def test_a_file_that_disagrees_with_the_manifest_is_detected(
    gcs_host: str, tiny_model: Path, tmp_path: Path
) -> None:
    """A weights file replaced after its manifest was written fails the crc32c check, naming the file."""
    source = tmp_path / "source"
    shutil.copytree(tiny_model, source)
    (source / MANIFEST_NAME).write_bytes(_manifest(tiny_model))
    weights = source / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # same size, one flipped byte
    weights.write_bytes(bytes(data))
    _upload(source, "weights-corrupt", "models/tiny/v1")
    with pytest.raises(WeightsError, match=r"model\.safetensors: crc32c .* \(corrupted\)"):
        download("gs://weights-corrupt/models/tiny/v1", tmp_path / "cache")


def test_a_corrupted_cached_file_is_downloaded_again(
    gcs_host: str, tiny_model: Path, tmp_path: Path
) -> None:
    """A cached file that no longer matches the object's crc32c is replaced by a fresh download."""
    _upload(tiny_model, "weights-cache", "m/v1")
    cache = tmp_path / "cache"
    folder = download("gs://weights-cache/m/v1", cache)
    (folder / "config.json").write_text("{}")
    again = download("gs://weights-cache/m/v1", cache)
    assert (again / "config.json").read_bytes() == (tiny_model / "config.json").read_bytes()


def test_an_empty_gs_folder_is_an_error(gcs_host: str, tmp_path: Path) -> None:
    """A gs:// folder with no objects fails with a message naming the URI."""
    (tmp_path / "nothing").mkdir()
    _upload(tmp_path / "nothing", "weights-empty", "x")
    with pytest.raises(WeightsError, match="gs://weights-empty/models/none: no objects"):
        download("gs://weights-empty/models/none", tmp_path / "cache")


def test_verify_file_checks_size_then_crc32c(tmp_path: Path) -> None:
    """A wrong size or a wrong crc32c raises; the right ones pass."""
    path = tmp_path / "f.bin"
    path.write_bytes(b"hello")
    good = RemoteFile("f.bin", 5, crc32c_of(path))
    verify_file(path, good)
    with pytest.raises(WeightsError, match="size 5 bytes, expected 6"):
        verify_file(path, RemoteFile("f.bin", 6, good.crc32c))
    with pytest.raises(WeightsError, match="crc32c"):
        verify_file(path, RemoteFile("f.bin", 5, "AAAAAA=="))


def test_crc32c_matches_what_gcs_reports() -> None:
    """The checksum is GCS's format: base64 of the big-endian CRC32C (a known vector)."""
    import tempfile

    with tempfile.NamedTemporaryFile() as file:
        file.write(b"123456789")
        file.flush()
        # CRC32C("123456789") = 0xE3069283
        assert crc32c_of(Path(file.name)) == "4waSgw=="


def test_remote_code_is_refused_unless_trusted(tiny_model: Path, tmp_path: Path) -> None:
    """A config with auto_map is refused with a message pointing at --trust-remote-code."""
    folder = tmp_path / "m"
    shutil.copytree(tiny_model, folder)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.Model"}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(WeightsError, match="auto_map.*--trust-remote-code"):
        check_folder(folder)
    check_folder(folder, trust_remote_code=True)


def test_pickle_weights_are_refused_unless_allowed(tiny_model: Path, tmp_path: Path) -> None:
    """A .bin file is refused by default and accepted with --allow-unsafe-weights."""
    folder = tmp_path / "m"
    shutil.copytree(tiny_model, folder)
    (folder / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(WeightsError, match="pickle-based weights.*--allow-unsafe-weights"):
        check_folder(folder)
    check_folder(folder, allow_unsafe=True)


def test_incomplete_folders_are_refused(tiny_model: Path, tmp_path: Path) -> None:
    """No folder, no config.json, no safetensors, or a shard missing from the index: each is named."""
    with pytest.raises(WeightsError, match="does not exist"):
        check_folder(tmp_path / "missing")
    folder = tmp_path / "m"
    shutil.copytree(tiny_model, folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(WeightsError, match="no \\*.safetensors"):
        check_folder(folder)
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"a": "model-00001-of-00002.safetensors"}})
    )
    (folder / "other.safetensors").write_bytes(b"")
    with pytest.raises(WeightsError, match="shards named by the index are missing"):
        check_folder(folder)
    (folder / "config.json").unlink()
    with pytest.raises(WeightsError, match="no config.json"):
        check_folder(folder)


def test_gs_uris_split_into_bucket_and_prefix() -> None:
    """gs://bucket/a/b/ → bucket and 'a/b/'; a bare bucket has an empty prefix; others are refused."""
    assert split_gs_uri("gs://b/a/b/") == ("b", "a/b/")
    assert split_gs_uri("gs://b") == ("b", "")
    with pytest.raises(WeightsError):
        split_gs_uri("s3://b/a")
