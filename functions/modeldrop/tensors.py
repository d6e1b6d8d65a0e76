"""Structural checks of safetensors files: the header is read and every tensor's bytes accounted for.

The format (safetensors' own specification): 8 bytes of little-endian header length N, then N bytes
of UTF-8 JSON (an object: tensor name -> {dtype, shape, data_offsets}, plus an optional
`__metadata__` of strings), then the tensors' bytes. Offsets count from the end of the header; the
buffer must be covered exactly, without holes or overlaps. A file that breaks any of this would be
registered and then fail in the serving container minutes into a GPU deploy, so it is refused here.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from math import prod
from typing import Any

from modeldrop import jsonlimits

SAFETENSORS_SUFFIX = ".safetensors"
# The header limit safetensors itself enforces when loading (100 MB).
MAX_HEADER_BYTES = 100_000_000
# The first read: a header usually fits, so one ranged read per file is enough.
FIRST_READ_BYTES = 1024 * 1024
# Element sizes in bits of every dtype safetensors defines (sub-byte types are packed).
DTYPE_BITS: Mapping[str, int] = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "C64": 64,
    "I64": 64,
    "U64": 64,
    "F64": 64,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
}

# (start, end_exclusive) -> the bytes at that range of the file.
ReadRange = Callable[[int, int], bytes]
# (file name, start, end_exclusive) -> the bytes at that range of that file of the folder.
ReadFileRange = Callable[[str, int, int], bytes]


@dataclass(frozen=True)
class Checked:
    """What one file's header holds, or why it can't be served."""

    tensors: frozenset[str]
    problems: tuple[str, ...]


def weights_problems(
    files: Mapping[str, int], weight_map: Mapping[str, Any] | None, read: ReadFileRange
) -> list[str]:
    """Every problem in a folder's safetensors files (`files`: name -> size) and its index's map."""
    checked = {
        name: check_file(name, size, _reader(read, name))
        for name, size in sorted(files.items())
        if name.endswith(SAFETENSORS_SUFFIX) and size > 0  # empty files are reported elsewhere
    }
    problems = [problem for result in checked.values() for problem in result.problems]
    if weight_map:
        problems += index_problems(weight_map, checked, "model.safetensors.index.json")
    return problems


def _reader(read: ReadFileRange, name: str) -> ReadRange:
    return lambda start, end: read(name, start, end)


def check_file(name: str, size: int, read_range: ReadRange) -> Checked:
    """Read `name`'s header through `read_range` and check it against the file's `size`."""
    if size < 8:
        return _bad(f"{name} is {size} bytes: too short for a safetensors header")
    first = read_range(0, min(size, FIRST_READ_BYTES))
    (length,) = struct.unpack("<Q", first[:8])
    if length > MAX_HEADER_BYTES:
        return _bad(
            f"{name} declares a {length}-byte header; safetensors allows {MAX_HEADER_BYTES}"
        )
    if 8 + length > size:
        return _bad(
            f"{name} declares a {length}-byte header but the file is only {size} bytes"
            " (truncated, or not safetensors)"
        )
    header = first[8 : 8 + length] if 8 + length <= len(first) else read_range(8, 8 + length)
    return check_header(name, header, size - 8 - length)


def check_header(name: str, header: bytes, buffer_size: int) -> Checked:
    """Check a parsed header against the `buffer_size` bytes that follow it."""
    if not header.startswith(b"{"):
        return _bad(f"{name} is not safetensors: its header is not a JSON object")
    try:
        parsed = jsonlimits.loads(header, max_bytes=MAX_HEADER_BYTES, what=f"{name}'s header")
    except jsonlimits.JsonLimitError as error:
        return _bad(f"{name} is not safetensors: {error}")
    if not isinstance(parsed, dict):
        return _bad(f"{name} is not safetensors: its header is not a JSON object")
    problems: list[str] = []
    metadata = parsed.pop("__metadata__", None)
    if metadata is not None and not (
        isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())
    ):
        problems.append(f"{name}: __metadata__ must map names to strings")
    spans: list[tuple[int, int, str]] = []
    for tensor, entry in parsed.items():
        span, problem = _tensor_span(name, tensor, entry)
        if problem:
            problems.append(problem)
        elif span is not None:
            spans.append(span)
    if not parsed:
        problems.append(f"{name} holds no tensors")
    problems += _coverage_problems(name, spans, buffer_size)
    return Checked(frozenset(parsed), tuple(problems[:20]))


def index_problems(
    weight_map: Mapping[str, Any], shards: Mapping[str, Checked], index_name: str
) -> list[str]:
    """Tensors the index maps to a shard whose header does not hold them."""
    problems = []
    for tensor, shard in sorted(weight_map.items(), key=lambda item: str(item[0])):
        checked = shards.get(str(shard))
        if checked is not None and not checked.problems and tensor not in checked.tensors:
            problems.append(f"{index_name} maps {tensor!r} to {shard}, which does not hold it")
    if len(problems) > 10:
        problems = problems[:10] + [f"... and {len(problems) - 10} more"]
    return problems


def _tensor_span(name: str, tensor: str, entry: Any) -> tuple[tuple[int, int, str] | None, str]:
    where = f"{name}: tensor {tensor[:80]!r}"
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        return None, f"{where} must have exactly dtype, shape and data_offsets"
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if dtype not in DTYPE_BITS:
        return None, f"{where} has unknown dtype {str(dtype)[:20]!r}"
    if not (isinstance(shape, list) and all(_natural(d) for d in shape)):
        return None, f"{where} has a shape that is not a list of non-negative integers"
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_natural(o) for o in offsets)):
        return None, f"{where} must have data_offsets [begin, end]"
    begin, end = offsets
    bits = prod(shape) * DTYPE_BITS[dtype]
    if end < begin or bits % 8 or end - begin != bits // 8:
        return None, (
            f"{where} is {dtype} {shape} ({bits / 8:g} bytes) but its offsets span"
            f" {end - begin} bytes"
        )
    return (begin, end, tensor), ""


def _coverage_problems(name: str, spans: list[tuple[int, int, str]], buffer_size: int) -> list[str]:
    at = 0
    for begin, end, tensor in sorted(spans):
        if begin != at:
            kind = "overlaps the tensor before it" if begin < at else "leaves a gap before it"
            return [f"{name}: tensor {tensor[:80]!r} at byte {begin} {kind}"]
        at = end
    if spans and at != buffer_size:
        return [
            f"{name}: the tensors cover {at} bytes but {buffer_size} follow the header"
            + (" (offsets past the end of the file)" if at > buffer_size else "")
        ]
    return []


def _natural(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _bad(problem: str) -> Checked:
    return Checked(frozenset(), (problem,))
