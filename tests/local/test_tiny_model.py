"""local.tiny_model writes a loadable, deterministic random-weight Gemma model in seconds."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from local.tiny_model import build_tiny_model, main


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_the_same_seed_writes_the_same_files(tmp_path: Path) -> None:
    """Two builds with one seed are byte-identical; another seed changes the weights."""
    first = build_tiny_model(tmp_path / "a", seed=3)
    second = build_tiny_model(tmp_path / "b", seed=3)
    other = build_tiny_model(tmp_path / "c", seed=4)
    assert _digests(first) == _digests(second)
    assert _digests(first)["model.safetensors"] != _digests(other)["model.safetensors"]
    assert {"config.json", "generation_config.json", "tokenizer.json"} <= set(_digests(first))


def test_shards_come_with_an_index_that_names_every_tensor(tmp_path: Path) -> None:
    """With --shards 3 the CLI writes three files and an index mapping each tensor to one of them."""
    from safetensors import safe_open

    main([str(tmp_path), "--shards", "3", "--seed", "1"])
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    files = sorted(p.name for p in tmp_path.glob("*.safetensors"))
    assert files == [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
    stored = set()
    for name in files:
        with safe_open(str(tmp_path / name), framework="pt") as shard:
            stored |= {key for key in shard.keys() if index["weight_map"][key] == name}
    assert stored == set(index["weight_map"])
    assert not (tmp_path / "model.safetensors").exists()


def test_transformers_loads_the_config_and_a_tokenizer_with_a_chat_template(tmp_path: Path) -> None:
    """transformers reads a Gemma config with head_dim 64 and a fast tokenizer that renders chats."""
    from transformers import AutoConfig, AutoTokenizer

    build_tiny_model(tmp_path)
    config = AutoConfig.from_pretrained(tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    assert (config.model_type, config.head_dim, config.num_hidden_layers) == ("gemma", 64, 2)
    assert tokenizer.is_fast
    ids = tokenizer("the model serves tokens")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id
    assert "model serves" in tokenizer.decode(ids, skip_special_tokens=True)
    assert tokenizer.decode([config.vocab_size - 1]) == f"<unused{config.vocab_size - 1}>"
    chat = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert chat == "<bos><start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n"


def test_vllm_config_loading_accepts_the_model(tmp_path: Path) -> None:
    """vLLM's own config loader resolves the model to its Gemma architecture without remote code."""
    from vllm.transformers_utils.config import get_config

    build_tiny_model(tmp_path, shards=2)
    config = get_config(str(tmp_path), trust_remote_code=False)
    assert config.architectures == ["GemmaForCausalLM"]


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    """Zero shards or an unknown shape raise a ValueError that says what is wrong."""
    with pytest.raises(ValueError, match="shards"):
        build_tiny_model(tmp_path, shards=0)
    with pytest.raises(ValueError, match="unknown shape"):
        build_tiny_model(tmp_path, shape="huge")
