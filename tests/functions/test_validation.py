"""Validation of a version folder reports every problem and accepts a sound folder."""

from __future__ import annotations

import json
from typing import Any

import pytest

from modeldrop.validation import Policy, required_files, validate_version

CONFIG = {"architectures": ["GemmaForCausalLM"], "model_type": "gemma"}
INDEX = {
    "metadata": {"total_size": 150},
    "weight_map": {
        "a": "model-00001-of-00002.safetensors",
        "b": "model-00002-of-00002.safetensors",
    },
}


def make_files(**overrides: int | None) -> dict[str, int]:
    """A sound single-shard listing, with `overrides` (None removes a file)."""
    files: dict[str, int | None] = {
        "config.json": 300,
        "tokenizer.json": 2000,
        "tokenizer_config.json": 100,
        "model.safetensors": 1000,
        **overrides,
    }
    return {name: size for name, size in files.items() if size is not None}


def sharded_files() -> dict[str, int]:
    return make_files(
        **{
            "model.safetensors": None,
            "model.safetensors.index.json": 500,
            "model-00001-of-00002.safetensors": 100,
            "model-00002-of-00002.safetensors": 100,
        }
    )


def test_a_sound_single_shard_folder_has_no_problems() -> None:
    """config, tokenizer and model.safetensors are all a folder needs."""
    assert validate_version("gemma-tiny", "v1", make_files(), CONFIG) == []


def test_a_sound_sharded_folder_has_no_problems() -> None:
    """Every shard the index names, and no other, passes; the config may come as raw bytes."""
    problems = validate_version(
        "gemma-tiny", "v1", sharded_files(), json.dumps(CONFIG).encode(), json.dumps(INDEX).encode()
    )
    assert problems == []


def test_every_problem_is_reported_at_once() -> None:
    """A folder with several faults gets one reason per fault, not just the first."""
    files = make_files(**{"pytorch_model.bin": 10, "tokenizer.json": None, "modeling_x.py": 5})
    config: dict[str, Any] = {"architectures": ["NoSuchForCausalLM"], "auto_map": {"x": "y"}}
    problems = validate_version("Gemma", "v_1", files, config)
    text = "\n".join(problems)
    for needle in (
        "model name",
        "version name",
        "pickle",
        "Python code",
        "not served by vLLM",
        "auto_map",
        "no tokenizer",
    ):
        assert needle in text
    assert len(problems) == 7


def test_pickle_and_remote_code_pass_when_the_policy_allows_them() -> None:
    """allow_pickle and allow_remote_code lift exactly those refusals."""
    files = make_files(**{"model.safetensors": None, "pytorch_model.bin": 10, "modeling_x.py": 5})
    config = {**CONFIG, "auto_map": {"AutoModel": "modeling_x.X"}}
    policy = Policy(allow_pickle=True, allow_remote_code=True)
    assert validate_version("m", "v1", files, config, policy=policy) == []


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        (None, "config.json is missing"),
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        ({"model_type": "gemma"}, "names no architecture"),
    ],
)
def test_bad_configs_are_named(config: Any, needle: str) -> None:
    """A missing, broken or architecture-less config.json is a problem with a clear reason."""
    problems = validate_version("m", "v1", make_files(), config)
    assert any(needle in p for p in problems), problems


def test_index_mismatches_name_missing_and_extra_shards() -> None:
    """A shard the index names but the folder lacks, and one it has but the index doesn't, are both reported."""
    files = sharded_files()
    del files["model-00002-of-00002.safetensors"]
    files["model-00003-of-00002.safetensors"] = 50
    problems = validate_version("m", "v1", files, CONFIG, INDEX)
    assert any("model-00002-of-00002.safetensors named by" in p for p in problems)
    assert any("model-00003-of-00002.safetensors is not named by" in p for p in problems)


def test_index_pointing_outside_the_folder_is_refused() -> None:
    """A weight_map entry with a path is a path trick, not a shard."""
    index = {"weight_map": {"a": "../other/model.safetensors"}}
    problems = validate_version("m", "v1", sharded_files(), CONFIG, index)
    assert any("not a .safetensors file here" in p for p in problems)


def test_sizes_must_be_sane() -> None:
    """Empty shards, files over the limit and a total over the limit are refused."""
    policy = Policy(max_file_bytes=5000, max_total_bytes=6000)
    files = make_files(**{"model.safetensors": 0, "big.json": 9000})
    problems = validate_version("m", "v1", files, CONFIG, policy=policy)
    assert any("model.safetensors is empty" in p for p in problems)
    assert any("big.json is 9000 bytes" in p for p in problems)
    assert any("the version holds" in p for p in problems)


def test_file_names_with_folders_are_refused() -> None:
    """Names are checked against the layout's alphabet: no slashes, no '..'."""
    problems = validate_version("m", "v1", make_files(**{"sub/x.json": 1, "..": 1}), CONFIG)
    assert sum("file name" in p for p in problems) == 2


def test_required_files_follow_the_index() -> None:
    """A plain copy needs config, tokenizer and every indexed shard; without an index, model.safetensors."""
    assert required_files({"config.json"}, None) == {
        "config.json",
        "tokenizer.json",
        "model.safetensors",
    }
    names = set(sharded_files()) | {"tokenizer.model"}
    assert required_files(names - {"tokenizer.json"}, INDEX) == {
        "config.json",
        "tokenizer.model",
        "model.safetensors.index.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    }


def test_known_architectures_are_those_vllm_serves() -> None:
    """The checked-in architecture table matches the installed vLLM's registry."""
    registry = pytest.importorskip("vllm.model_executor.models.registry")
    from modeldrop.architectures import VLLM_ARCHITECTURES

    assert set(registry._TEXT_GENERATION_MODELS) == VLLM_ARCHITECTURES
