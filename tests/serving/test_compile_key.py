"""The compile cache's key: the same start gets the same key; other engine options, model or device another."""

from __future__ import annotations

from pathlib import Path

from serving.compile_key import device_name, key_for, model_version
from serving.settings import Settings


def key(argv: list[str], accelerator: str | None = None) -> str:
    settings = Settings.load(["--model", "gs://w/models/m/v1", *argv], {})
    return key_for(settings.model, settings.args, accelerator).digest


def test_the_same_options_give_the_same_key_in_any_order() -> None:
    assert key(["--max-model-len", "1024", "--dtype", "bfloat16"]) == key(
        ["--dtype", "bfloat16", "--max-model-len", "1024"]
    )


def test_options_that_shape_compilation_change_the_key() -> None:
    base = key(["--max-model-len", "1024"])
    assert key(["--max-model-len", "2048"]) != base
    assert key(["--max-model-len", "1024", "--max-num-seqs", "8"]) != base
    assert key(["--max-model-len", "1024", "-O0"]) != base
    assert key(["--max-model-len", "1024", "--enforce-eager"]) != base


def test_options_that_compile_nothing_keep_the_key() -> None:
    """Memory share, seed, logging and the served name change no compiled artifact."""
    base = key(["--max-model-len", "1024"])
    assert key(["--max-model-len", "1024", "--gpu-memory-utilization", "0.5"]) == base
    assert key(["--max-model-len", "1024", "--seed", "7", "--disable-log-stats"]) == base
    assert key(["--max-model-len", "1024", "--served-model-name", "other"]) == base


def test_the_model_version_is_the_gs_folder_or_the_local_config(tmp_path: Path) -> None:
    assert model_version("gs://w/models/m/v1/") == "gs://w/models/m/v1"
    (tmp_path / "config.json").write_text('{"a": 1}')
    first = model_version(str(tmp_path))
    (tmp_path / "config.json").write_text('{"a": 2}')
    assert model_version(str(tmp_path)) != first


def test_the_device_is_read_from_the_driver_then_vertex_then_the_cpu(tmp_path: Path) -> None:
    (tmp_path / "cpuinfo").write_text("processor\t: 0\nmodel name\t: Example CPU 9000\n")
    assert device_name(None, tmp_path) == "cpu Example CPU 9000"
    assert device_name("NVIDIA_L4", tmp_path) == "NVIDIA_L4"
    for index in (0, 1):
        info = tmp_path / "driver" / "nvidia" / "gpus" / f"0000:0{index}:00.0" / "information"
        info.parent.mkdir(parents=True)
        info.write_text("Model: \t\t NVIDIA H100 80GB HBM3\nIRQ: 1\n")
    assert device_name("NVIDIA_H100_80GB", tmp_path) == "2 x NVIDIA H100 80GB HBM3"
