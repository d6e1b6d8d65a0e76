"""safetensors headers are read and checked before a version is registered: every byte accounted for."""

from __future__ import annotations

import json
import struct

import pytest
from support.builders import make_safetensors

from modeldrop.tensors import Checked, check_file, index_problems, weights_problems


def checked(data: bytes, name: str = "model.safetensors") -> Checked:
    return check_file(name, len(data), lambda start, end: data[start:end])


def with_header(header: object, buffer: bytes = b"", length: int | None = None) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw + buffer


def test_a_well_formed_file_passes_and_names_its_tensors() -> None:
    """A file written the way safetensors writes it has no problems and lists its tensors."""
    result = checked(make_safetensors({"a": [2, 3], "b": [4]}))
    assert result.problems == ()
    assert result.tensors == {"a", "b"}


def test_packed_sub_byte_and_empty_tensors_are_accounted_for() -> None:
    """F4 packs two elements per byte; a zero-element tensor spans no bytes."""
    header = {
        "q": {"dtype": "F4", "shape": [4, 2], "data_offsets": [0, 4]},
        "e": {"dtype": "F32", "shape": [0], "data_offsets": [4, 4]},
        "__metadata__": {"format": "pt"},
    }
    assert checked(with_header(header, bytes(4))).problems == ()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\x01\x02", "too short"),
        (struct.pack("<Q", 2**40) + b"{}", "allows"),
        (struct.pack("<Q", 4096) + b"{}" + bytes(10), "truncated, or not safetensors"),
        (with_header(b"\x93NUMPY garbage!!"), "not a JSON object"),
        (with_header(b"{not json at all}"), "not valid JSON"),
        (with_header(b"[" * 5000 + b"]" * 5000), "not a JSON object"),
        (with_header(b'{"a":' + b'{"b":' * 100 + b"1" + b"}" * 101), "nests deeper"),
        (with_header({}), "holds no tensors"),
        (
            with_header(
                {
                    "__metadata__": {"k": 1},
                    "a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},
                },
                b"\0",
            ),
            "__metadata__",
        ),
        (
            with_header({"a": {"dtype": "F33", "shape": [1], "data_offsets": [0, 4]}}, bytes(4)),
            "unknown dtype",
        ),
        (
            with_header({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, bytes(4)),
            "non-negative",
        ),
        (
            with_header({"a": {"dtype": "F32", "shape": [True], "data_offsets": [0, 4]}}, bytes(4)),
            "non-negative",
        ),
        (
            with_header({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, bytes(4)),
            "offsets span 4",
        ),
        (
            with_header({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}, bytes(4)),
            "offsets span",
        ),
        (
            with_header({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0]}}, bytes(4)),
            "data_offsets [begin, end]",
        ),
        (
            with_header({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, bytes(8)),
            "gap",
        ),
        (
            with_header(
                {
                    "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                    "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]},
                },
                bytes(8),
            ),
            "overlaps",
        ),
        (
            with_header({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, bytes(8)),
            "past the end",
        ),
        (
            with_header({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, bytes(12)),
            "cover 4 bytes but 12",
        ),
        (
            with_header(
                {"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4], "x": 1}}, bytes(4)
            ),
            "exactly",
        ),
    ],
)
def test_every_malformed_header_is_refused_with_its_reason(data: bytes, expected: str) -> None:
    """Garbage, truncation, bad JSON, deep JSON, wrong dtypes, shapes and offsets: each named."""
    problems = checked(data).problems
    assert problems and expected in " ".join(problems), problems


def test_random_bytes_with_a_plausible_length_are_refused() -> None:
    """Random bytes after a small, in-range length are not a header."""
    data = struct.pack("<Q", 64) + bytes(range(64)) + bytes(100)
    assert "not a JSON object" in checked(data).problems[0]


def test_a_large_header_is_read_in_a_second_range() -> None:
    """A header bigger than the first read is fetched with one more ranged read, not the whole file."""
    tensors = {f"layer.{i}.weight": [1] for i in range(40_000)}
    data = make_safetensors(tensors)
    reads: list[tuple[int, int]] = []

    def read(start: int, end: int) -> bytes:
        reads.append((start, end))
        return data[start:end]

    assert check_file("big.safetensors", len(data), read).problems == ()
    assert len(reads) == 2 and reads[1][0] == 8


def test_the_index_must_map_tensors_to_shards_that_hold_them() -> None:
    """weight_map entries pointing at a shard without that tensor are named."""
    files = {
        "a.safetensors": make_safetensors({"x": [1]}),
        "b.safetensors": make_safetensors({"y": [1]}),
    }
    weight_map = {"x": "a.safetensors", "y": "a.safetensors", "z": "b.safetensors"}
    problems = weights_problems(
        {n: len(d) for n, d in files.items()}, weight_map, lambda n, s, e: files[n][s:e]
    )
    assert problems == [
        "model.safetensors.index.json maps 'y' to a.safetensors, which does not hold it",
        "model.safetensors.index.json maps 'z' to b.safetensors, which does not hold it",
    ]
    assert index_problems({}, {}, "i.json") == []
