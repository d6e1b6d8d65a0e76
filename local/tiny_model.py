"""Build a random-weight Gemma-architecture model and a locally trained tokenizer, for tests and benchmarks."""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# Gemma's chat format; `bos_token` comes first because chat prompts skip the tokenizer's own BOS.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "<start_of_turn>{{ role }}\n{{ message['content'] | trim }}<end_of_turn>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
SPECIAL_TOKENS = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
PAD_ID, EOS_ID, BOS_ID = 0, 1, 2

_WORDS = (
    "the a model weights bucket deploy serve token engine batch request answer question "
    "cloud region endpoint version upload idle sweep gemma small large fast slow green blue "
    "river mountain city garden window paper music light night morning people write read "
    "think build run walk open close begin end good new old first last long great little "
    "own other right big high different early young important few public bad same able"
).split()


@dataclass(frozen=True)
class Shape:
    """The sizes of a Gemma-architecture model."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    max_position_embeddings: int
    tokenizer_vocab: int  # BPE entries actually trained; the rest of the vocabulary is filler


SHAPES = {
    # head_dim 64: the CPU attention kernels reject smaller heads.
    "tiny": Shape(1024, 256, 512, 2, 4, 1, 64, 4096, 1024),
    # Gemma-2B's shape, for GPU benchmarks (~2.5 G parameters, ~5 GB in bfloat16).
    "gemma-2b": Shape(256000, 2048, 16384, 18, 8, 1, 256, 8192, 8192),
}


def build_tiny_model(
    out_dir: Path, seed: int = 0, shards: int = 1, shape: str = "tiny", device: str = "cpu"
) -> Path:
    """Write config, generation config, tokenizer and safetensors weights for a model into `out_dir`."""
    if shards < 1:
        raise ValueError(f"shards must be at least 1, got {shards}")
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")
    sizes = SHAPES[shape]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_json(out_dir / "config.json", _config(sizes))
    _write_json(
        out_dir / "generation_config.json",
        {"bos_token_id": BOS_ID, "eos_token_id": EOS_ID, "pad_token_id": PAD_ID},
    )
    _write_tokenizer(out_dir, sizes, seed)
    _write_weights(out_dir, sizes, seed, shards, device)
    return out_dir


def _config(sizes: Shape) -> dict[str, Any]:
    fields = asdict(sizes)
    fields.pop("tokenizer_vocab")
    return {
        "architectures": ["GemmaForCausalLM"],
        "model_type": "gemma",
        **fields,
        "hidden_act": "gelu_pytorch_tanh",
        "hidden_activation": "gelu_pytorch_tanh",
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "bos_token_id": BOS_ID,
        "eos_token_id": EOS_ID,
        "pad_token_id": PAD_ID,
        "tie_word_embeddings": True,
        "torch_dtype": "bfloat16",
        "use_cache": True,
    }


def _corpus(seed: int, lines: int = 2000) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(_WORDS, k=rng.randint(5, 20))) + "." for _ in range(lines)]


def _write_tokenizer(out_dir: Path, sizes: Shape, seed: int) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=sizes.tokenizer_vocab,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_corpus(seed), trainer=trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", BOS_ID)]
    )
    data = json.loads(tokenizer.to_str())
    vocab: dict[str, int] = data["model"]["vocab"]
    # Pad the vocabulary to the model's size with plain entries, so every id the model can
    # sample decodes to text; plain entries (not added tokens) keep loading fast at 256k.
    for token_id in range(len(vocab), sizes.vocab_size):
        vocab[f"<unused{token_id}>"] = token_id
    (out_dir / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False))
    _write_json(
        out_dir / "tokenizer_config.json",
        {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": "<bos>",
            "eos_token": "<eos>",
            "pad_token": "<pad>",
            "unk_token": "<unk>",
            "add_bos_token": True,
            "add_eos_token": False,
            "model_max_length": sizes.max_position_embeddings,
            "chat_template": CHAT_TEMPLATE,
        },
    )
    _write_json(
        out_dir / "special_tokens_map.json",
        {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>"},
    )


def _tensor_shapes(sizes: Shape) -> list[tuple[str, tuple[int, ...]]]:
    hidden, heads, kv = sizes.hidden_size, sizes.num_attention_heads, sizes.num_key_value_heads
    q, k = heads * sizes.head_dim, kv * sizes.head_dim
    shapes: list[tuple[str, tuple[int, ...]]] = [
        ("model.embed_tokens.weight", (sizes.vocab_size, hidden))
    ]
    for i in range(sizes.num_hidden_layers):
        p = f"model.layers.{i}"
        shapes += [
            (f"{p}.input_layernorm.weight", (hidden,)),
            (f"{p}.self_attn.q_proj.weight", (q, hidden)),
            (f"{p}.self_attn.k_proj.weight", (k, hidden)),
            (f"{p}.self_attn.v_proj.weight", (k, hidden)),
            (f"{p}.self_attn.o_proj.weight", (hidden, q)),
            (f"{p}.post_attention_layernorm.weight", (hidden,)),
            (f"{p}.mlp.gate_proj.weight", (sizes.intermediate_size, hidden)),
            (f"{p}.mlp.up_proj.weight", (sizes.intermediate_size, hidden)),
            (f"{p}.mlp.down_proj.weight", (hidden, sizes.intermediate_size)),
        ]
    shapes.append(("model.norm.weight", (hidden,)))
    return shapes


def _write_weights(out_dir: Path, sizes: Shape, seed: int, shards: int, device: str) -> None:
    import torch
    from safetensors.torch import save_file

    generator = torch.Generator(device=device).manual_seed(seed)
    tensors: dict[str, Any] = {}
    for name, shape in _tensor_shapes(sizes):
        if len(shape) == 1:
            # Gemma's RMSNorm scales by (1 + weight): zeros keep activations at unit scale.
            tensor = torch.zeros(shape, dtype=torch.bfloat16, device=device)
        else:
            tensor = torch.randn(shape, generator=generator, device=device, dtype=torch.float32)
            tensor = (tensor * 0.02).to(torch.bfloat16)
        tensors[name] = tensor.cpu()
    names = list(tensors)
    if shards == 1:
        save_file(tensors, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
        return
    groups = [names[i::shards] for i in range(shards)]
    weight_map: dict[str, str] = {}
    total = 0
    for index, group in enumerate(groups, start=1):
        filename = f"model-{index:05d}-of-{shards:05d}.safetensors"
        part = {name: tensors[name] for name in group}
        save_file(part, str(out_dir / filename), metadata={"format": "pt"})
        for name in group:
            weight_map[name] = filename
            total += tensors[name].numel() * tensors[name].element_size()
    _write_json(
        out_dir / "model.safetensors.index.json",
        {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))},
    )


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m local.tiny_model", description=__doc__)
    parser.add_argument("out_dir", type=Path, help="folder to write the model into")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same files)")
    parser.add_argument("--shards", type=int, default=1, help="number of safetensors files")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny", help="model size")
    parser.add_argument("--device", default="cpu", help="torch device that draws the weights")
    args = parser.parse_args(argv)
    path = build_tiny_model(args.out_dir, args.seed, args.shards, args.shape, args.device)
    print(path)


if __name__ == "__main__":
    main()
