"""The hostile-input corpus, as data: bad commands and bad uploads, each with the words its failed result must contain.

Add a row to grow it. A command row is (name, body, needle): `body` is the raw message (bytes) or a
JSON object; its request_id, when it has a valid one, keys the result (else the message id does). An upload row is
(name, files, needle): `files` maps object names under models/<model>/v1/ to their bytes; a manifest
naming every file (and a request_id) is written last, as the CLI does, unless the row writes its own.
`KNOWN` is a model the test registers first, so rows can name a real model with a bad version or machine.
"""

from __future__ import annotations

import json
from typing import Any

from support.builders import make_safetensors

KNOWN = "known"
CONFIG = {"architectures": ["GemmaForCausalLM"], "model_type": "gemma", "head_dim": 64}
SAFETENSORS = make_safetensors()
TOKENIZER = b'{"version": "1.0"}'

Body = bytes | dict[str, Any]


def _cmd(action: str = "deploy", **fields: Any) -> dict[str, Any]:
    base: dict[str, dict[str, Any]] = {
        "deploy": {"model": KNOWN, "machine_type": "n1-standard-4", "accelerator": None},
        "undeploy": {"endpoint": "nowhere"},
        "scale": {"endpoint": "nowhere", "min_replicas": 1},
        "traffic": {"endpoint": "nowhere", "split": {"v1": 100}},
        "delete-endpoint": {"endpoint": "nowhere"},
        "register": {"model": KNOWN, "version": "v9"},
        "wake": {"endpoint": "nowhere"},
    }
    body = {"action": action, **base[action], **fields}
    return {k: v for k, v in body.items() if v is not ...}


COMMANDS: list[tuple[str, Body, str]] = [
    # Malformed JSON and non-objects
    ("not-json", b"{not json", "invalid command"),
    ("blank-body", b"  \n", "invalid command"),  # Pub/Sub refuses an empty message
    ("json-null", b"null", "invalid command"),
    ("json-array", b"[]", "invalid command"),
    ("json-number", b"42", "invalid command"),
    ("json-string", b'"deploy"', "invalid command"),
    ("truncated", b'{"action": "deploy", "request_id": "trunc"', "invalid command"),
    ("trailing-comma", b'{"action": "deploy", "model": "known",}', "invalid command"),
    ("invalid-utf8", b"\xff\xfe\xfd{}", "invalid command"),
    ("nan-literal", b'{"action": "scale", "endpoint": "x", "min_replicas": NaN}', "invalid"),
    # Wrong types
    ("model-int", _cmd(model=123), "model"),
    ("replicas-string", _cmd(min_replicas="two"), "min_replicas"),
    ("count-float", _cmd(accelerator_count=1.5), "accelerator_count"),
    ("split-list", _cmd("traffic", split=["v1", 100]), "split"),
    ("request-id-int", {**_cmd(), "request_id": 7}, "request_id"),
    ("ttl-list", _cmd(idle_ttl=[30]), "idle_ttl"),
    ("force-object", _cmd("delete-endpoint", force={"yes": True}), "force"),
    ("endpoint-null", _cmd("undeploy", endpoint=None), "endpoint"),
    # Unknown actions and fields
    ("action-unknown", {"action": "explode", "model": KNOWN}, "action"),
    ("action-upper", {"action": "DEPLOY", "model": KNOWN}, "action"),
    ("action-empty", {"action": "", "model": KNOWN}, "action"),
    ("action-missing", {"model": KNOWN}, "action"),
    ("field-unknown", _cmd(colour="red"), "colour"),
    ("field-proto", _cmd(__proto__={"admin": True}), "__proto__"),
    ("field-nested", _cmd("scale", replicas={"min": 1}), "replicas"),
    # Huge messages
    ("huge-100k", _cmd(model="a" * 100_000), "limit"),
    ("huge-1m", b'{"action": "deploy", "pad": "' + b"x" * 1_000_000 + b'"}', "limit"),
    # Unicode and control characters
    ("model-nul", _cmd(model="gemma\u0000"), "model"),
    ("model-cjk", _cmd(model="模型"), "model"),
    ("model-newline", _cmd(model="gemma\n-evil"), "model"),
    ("endpoint-rtl", _cmd("undeploy", endpoint="abc\u202eexe"), "endpoint"),
    ("request-id-emoji", {**_cmd(), "request_id": "req-\U0001f4a5"}, "request_id"),
    ("request-id-control", {**_cmd(), "request_id": "req\x07bell"}, "request_id"),
    # Path traversal in names
    ("model-dotdot", _cmd(model="../etc"), "model"),
    ("version-traversal", _cmd(version="../../v1"), "version"),
    ("endpoint-slash", _cmd("undeploy", endpoint="a/b"), "endpoint"),
    ("register-bucket-traversal", _cmd("register", bucket="../../state"), "bucket"),
    ("register-model-dotdot", _cmd("register", model=".."), "model"),
    # Impossible machine / accelerator combinations
    ("l4-on-n1", _cmd(accelerator="NVIDIA_L4", machine_type="n1-standard-4"), "g2-standard"),
    ("h100-on-g2", _cmd(accelerator="NVIDIA_H100_80GB", machine_type="g2-standard-12"), "machine"),
    (
        "l4-count-3",
        _cmd(accelerator="NVIDIA_L4", accelerator_count=3, machine_type=...),
        "NVIDIA_L4",
    ),
    ("accelerator-unknown", _cmd(accelerator="NVIDIA_NOPE", machine_type=...), "NVIDIA_NOPE"),
    ("machine-potato", _cmd(machine_type="potato-1"), "potato-1"),
    (
        "accelerator-count-17",
        _cmd(accelerator="NVIDIA_L4", accelerator_count=17),
        "accelerator_count",
    ),
    # Negative or absurd replica counts
    ("replicas-negative", _cmd(min_replicas=-1), "min_replicas"),
    ("replicas-zero", _cmd(min_replicas=0), "min_replicas"),
    ("replicas-absurd", _cmd(min_replicas=10**9), "min_replicas"),
    ("replicas-max-below-min", _cmd(min_replicas=3, max_replicas=2), "below min_replicas"),
    ("scale-zero", _cmd("scale", min_replicas=0), "min_replicas"),
    ("scale-max-1000", _cmd("scale", max_replicas=1000), "max_replicas"),
    ("traffic-110", _cmd("traffic", split={"v1": 110}), "split"),
    ("traffic-sum-70", _cmd("traffic", split={"v1": 50, "v2": 20}), "not 100"),
    ("ttl-negative", _cmd(idle_ttl=-5), "idle_ttl"),
    ("ttl-31-days", _cmd(idle_ttl="31d"), "idle_ttl"),
    ("ttl-words", _cmd(idle_ttl="soon"), "idle_ttl"),
    ("ttl-object", _cmd(idle_ttl={"minutes": 5}), "idle_ttl"),
    (
        "ttl-infinite",
        b'{"action": "deploy", "model": "known", "idle_ttl": 1e999, "request_id": "hostile-ttl-inf"}',
        "finite",
    ),
    # Unknown models, versions and endpoints
    ("model-unknown", _cmd(model="never-uploaded"), "has no version"),
    ("version-unknown", _cmd(version="v404"), "has no version"),
    ("undeploy-unknown-endpoint", _cmd("undeploy"), "nothing to undeploy"),
    ("scale-unknown-endpoint", _cmd("scale"), "does not exist"),
    ("traffic-unknown-endpoint", _cmd("traffic"), "does not exist"),
    ("wake-nothing", _cmd("wake"), "nothing was torn down"),
    ("register-missing-folder", _cmd("register"), "missing"),
    # Deeply nested JSON (Python's own parser dies with RecursionError on these)
    ("deep-array", b"[" * 5000 + b"]" * 5000, "invalid command"),
    ("deep-object", b'{"a":' * 5000 + b"1" + b"}" * 5000, "invalid command"),
    (
        "deep-in-split",
        b'{"action": "traffic", "endpoint": "x", "request_id": "hostile-deep-split", "split": '
        + b"[" * 3000
        + b"]" * 3000
        + b"}",
        "invalid",
    ),
    ("deep-65-levels", _cmd(colour=json.loads("[" * 65 + "]" * 65)), "invalid"),
    # Strict types: nothing is coerced
    ("replicas-numeric-string", _cmd(min_replicas="2"), "min_replicas"),
    ("replicas-float-whole", _cmd(min_replicas=1.0), "min_replicas"),
    ("replicas-bool", _cmd(min_replicas=True), "min_replicas"),
    ("keep-warm-yes", _cmd(keep_warm="yes"), "keep_warm"),
    ("keep-warm-one", _cmd(keep_warm=1), "keep_warm"),
    ("force-string", _cmd("delete-endpoint", force="true"), "force"),
    ("count-string", _cmd(accelerator_count="1"), "accelerator_count"),
    ("traffic-percent-string", _cmd(traffic_percent="50"), "traffic_percent"),
    ("split-percent-string", _cmd("traffic", split={"v1": "100"}), "split"),
    ("replicas-1e400", b'{"action": "deploy", "model": "known", "min_replicas": 1e400}', "invalid"),
    # Request ids that break the documented pattern: answered under a stable replacement
    ("request-id-newline", {**_cmd(), "request_id": "req-1\n"}, "request_id"),
    ("request-id-space", {**_cmd(), "request_id": " req-1"}, "request_id"),
    ("request-id-129", {**_cmd(), "request_id": "r" * 129}, "request_id"),
    ("request-id-empty", {**_cmd(), "request_id": ""}, "request_id"),
    ("request-id-null", {**_cmd(), "request_id": None}, "request_id"),
    # Endpoint ids Vertex refuses (CreateEndpointRequest.endpoint_id)
    ("endpoint-digit-then-letters", _cmd(endpoint="7b-chat"), "endpoint"),
    ("endpoint-leading-zero", _cmd(endpoint="0123"), "endpoint"),
    ("endpoint-ten-digits", _cmd(endpoint="1234567890"), "endpoint"),
    ("endpoint-trailing-dash", _cmd(endpoint="chat-"), "endpoint"),
    ("endpoint-64", _cmd(endpoint="e" * 64), "endpoint"),
    ("model-leading-digit", _cmd(model="7b"), "model"),
    ("version-latest-folder", _cmd("register", version="latest"), "version"),
    ("version-upper", _cmd(version="V1"), "version"),
    # Odd but valid JSON around a bad command
    ("bom-prefixed", b'\xef\xbb\xbf{"action": "deploy", "model": "known"}', "invalid command"),
    (
        "duplicate-split-keys",
        b'{"action": "traffic", "endpoint": "x", "request_id": "hostile-dup-keys", "split": {"v1": 50, "v1": 50}}',
        "split",
    ),
]

# Rows whose right answer is not a failure: "nothing to do" is success.
EXPECTED_STATUS: dict[str, str] = {"undeploy-unknown-endpoint": "succeeded"}


def _manifest_files(files: dict[str, bytes]) -> list[dict[str, Any]]:
    import base64

    import google_crc32c

    return [
        {
            "name": name,
            "size": len(data),
            "crc32c": base64.b64encode(google_crc32c.Checksum(data).digest()).decode(),
        }
        for name, data in sorted(files.items())
    ]


def sound(**changes: bytes | None) -> dict[str, bytes]:
    """A valid version folder with `changes` (None removes a file)."""
    files = {
        "config.json": json.dumps(CONFIG).encode(),
        "tokenizer.json": TOKENIZER,
        "model.safetensors": SAFETENSORS,
    }
    for name, data in changes.items():
        name = name.replace("__", ".").replace("_dash_", "-")
        if data is None:
            files.pop(name, None)
        else:
            files[name] = data
    return files


def _config(**fields: Any) -> bytes:
    return json.dumps({**CONFIG, **fields}).encode()


_INDEX = {
    "metadata": {"total_size": 16},
    "weight_map": {
        "a": "model-00001-of-00002.safetensors",
        "b": "model-00002-of-00002.safetensors",
    },
}

# (name, files in the folder, needle). A "modeldrop-manifest.json" key replaces the generated one.
UPLOADS: list[tuple[str, dict[str, bytes], str]] = [
    ("pickle-only", sound(model__safetensors=None, pytorch_model__bin=b"\x80\x04pickle"), "pickle"),
    ("pickle-beside", sound(evil__pkl=b"\x80\x04cos\nsystem\n"), "pickle"),
    ("torch-pt", sound(weights__pt=b"\x80\x02"), "pickle"),
    ("python-code", sound(modeling_evil__py=b"import os; os.system('id')"), "Python code"),
    ("auto-map", sound(config__json=_config(auto_map={"AutoModel": "evil.Model"})), "auto_map"),
    ("config-not-json", sound(config__json=b"{architectures: [Gemma"), "config.json"),
    ("config-array", sound(config__json=b"[1, 2, 3]"), "config.json"),
    (
        "config-unknown-arch",
        sound(config__json=_config(architectures=["EvilForCausalLM"])),
        "not served by vLLM",
    ),
    ("config-no-arch", sound(config__json=b'{"model_type": "gemma"}'), "architecture"),
    ("config-huge", sound(config__json=b'{"pad": "' + b"x" * 2_000_000 + b'"}'), "config.json"),
    ("no-tokenizer", sound(tokenizer__json=None), "tokenizer"),
    ("empty-weights", sound(model__safetensors=b""), "empty"),
    (
        "index-missing-shard",
        sound(
            model__safetensors=None,
            model__safetensors__index__json=json.dumps(_INDEX).encode(),
            **{"model_dash_00001_dash_of_dash_00002__safetensors": SAFETENSORS},
        ),
        "is missing",
    ),
    (
        "index-extra-shard",
        sound(
            model__safetensors=None,
            model__safetensors__index__json=json.dumps(
                {"weight_map": {"a": "model-00001-of-00002.safetensors"}}
            ).encode(),
            **{
                "model_dash_00001_dash_of_dash_00002__safetensors": SAFETENSORS,
                "model_dash_00002_dash_of_dash_00002__safetensors": SAFETENSORS,
            },
        ),
        "not named by",
    ),
    (
        "index-traversal",
        sound(
            model__safetensors=None,
            model__safetensors__index__json=json.dumps(
                {"weight_map": {"a": "../../state/leases.safetensors"}}
            ).encode(),
        ),
        "not a .safetensors file here",
    ),
    (
        "index-not-json",
        sound(model__safetensors=None, model__safetensors__index__json=b"{oops"),
        "model.safetensors.index.json",
    ),
    ("manifest-not-json", {**sound(), "modeldrop-manifest.json": b"{not a manifest"}, "manifest"),
    (
        "manifest-wrong-size",
        {**sound(), "modeldrop-manifest.json": b"SIZE"},
        "bytes; the manifest says",
    ),
    ("manifest-wrong-crc", {**sound(), "modeldrop-manifest.json": b"CRC"}, "crc32c"),
    (
        "manifest-other-folder",
        {**sound(), "modeldrop-manifest.json": b"OTHER"},
        "the manifest is for",
    ),
    (
        "manifest-traversal-name",
        {**sound(), "modeldrop-manifest.json": b"TRAVERSAL"},
        "manifest files",
    ),
]


def _header(
    header: bytes | dict[str, Any], buffer: bytes = b"", length: int | None = None
) -> bytes:
    """A safetensors file with `header` (bytes as they are, or a dict as JSON) and `buffer`."""
    import struct

    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw + buffer


def _tensor(
    dtype: str = "F32", shape: list[int] | None = None, offsets: list[int] | None = None
) -> dict[str, Any]:
    return {"dtype": dtype, "shape": shape or [1], "data_offsets": offsets or [0, 4]}


# Malformed safetensors files as the whole weights of an otherwise sound folder: (name, file, needle).
BAD_SAFETENSORS: list[tuple[str, bytes, str]] = [
    ("st-random-bytes", _header(bytes(range(64))), "not safetensors"),
    ("st-not-json", _header(b"{weights: yes}"), "not valid json"),
    ("st-json-array", _header(b"[1, 2]"), "not a json object"),
    ("st-deep-json", _header(b'{"a":' * 300 + b"1" + b"}" * 300), "safetensors"),
    ("st-length-past-end", _header(b"{}", length=1 << 20), "truncated"),
    ("st-length-absurd", _header(b"{}", length=1 << 62), "allows"),
    ("st-seven-bytes", b"\x01\x00\x00\x00\x00\x00\x00", "too short"),
    ("st-no-tensors", _header({"__metadata__": {"format": "pt"}}), "holds no tensors"),
    (
        "st-metadata-int",
        _header({"__metadata__": {"n": 1}, "w": _tensor()}, bytes(4)),
        "__metadata__",
    ),
    ("st-dtype-unknown", _header({"w": _tensor("F128")}, bytes(4)), "unknown dtype"),
    ("st-shape-negative", _header({"w": _tensor(shape=[-4])}, bytes(4)), "non-negative"),
    (
        "st-shape-string",
        _header({"w": {"dtype": "F32", "shape": "4", "data_offsets": [0, 4]}}, bytes(4)),
        "shape",
    ),
    ("st-size-mismatch", _header({"w": _tensor(shape=[3])}, bytes(4)), "offsets span"),
    ("st-offsets-reversed", _header({"w": _tensor(offsets=[4, 0])}, bytes(4)), "offsets span"),
    (
        "st-offsets-past-end",
        _header({"w": _tensor(shape=[64], offsets=[0, 256])}, bytes(8)),
        "past the end",
    ),
    ("st-gap", _header({"w": _tensor(offsets=[4, 8])}, bytes(8)), "gap"),
    (
        "st-overlap",
        _header({"a": _tensor(shape=[2], offsets=[0, 8]), "b": _tensor(offsets=[4, 8])}, bytes(8)),
        "overlaps",
    ),
    ("st-trailing-bytes", _header({"w": _tensor()}, bytes(64)), "follow the header"),
    ("st-extra-key", _header({"w": {**_tensor(), "note": "x"}}, bytes(4)), "exactly"),
    ("st-missing-offsets", _header({"w": {"dtype": "F32", "shape": [1]}}, bytes(4)), "exactly"),
    ("st-pickle-magic", b"\x80\x04\x95" + bytes(64), "safetensors"),
    ("st-zip-magic", b"PK\x03\x04" + bytes(64), "safetensors"),
]
UPLOADS += [
    (name, sound(model__safetensors=data), needle) for name, data, needle in BAD_SAFETENSORS
]
UPLOADS += [
    (
        "index-tensor-not-in-shard",
        sound(
            model__safetensors=None,
            model__safetensors__index__json=json.dumps(
                {
                    "weight_map": {
                        "lm_head.weight": "model-00001-of-00001.safetensors",
                        "ghost": "model-00001-of-00001.safetensors",
                    }
                }
            ).encode(),
            **{"model_dash_00001_dash_of_dash_00001__safetensors": SAFETENSORS},
        ),
        "does not hold it",
    ),
    ("bad-shard-of-two", sound(model__safetensors=_header(b"[]")), "not a json object"),
    ("config-deep", sound(config__json=b'{"a":' * 300 + b"1" + b"}" * 300), "config.json"),
    (
        "index-deep",
        sound(model__safetensors=None, model__safetensors__index__json=b"[" * 4000 + b"]" * 4000),
        "model.safetensors.index.json",
    ),
    (
        "manifest-deep",
        {**sound(), "modeldrop-manifest.json": b'{"files":' * 300 + b"1" + b"}" * 300},
        "manifest",
    ),
]

# Object names under models/ that are not a version folder (or a name Vertex refuses) get one
# rejected result per folder; objects outside models/ are not modeldrop's and are ignored.
BAD_PATHS: list[tuple[str, str]] = [
    ("models/../evil/v1/modeldrop-manifest.json", "rejected"),
    ("models/Bad Name/v1/modeldrop-manifest.json", "rejected"),
    ("models/模型/v1/modeldrop-manifest.json", "rejected"),
    ("models/ok/v1/nested/modeldrop-manifest.json", "rejected"),
    ("models/ok/..%2f..%2fetc/modeldrop-manifest.json", "rejected"),
    ("models/../../etc/passwd", "rejected"),
    ("models/ok/v1/../../../state/leases/x.json", "rejected"),
    ("models/ok/latest/config.json", "rejected"),
    ("models/ok/default/config.json", "rejected"),
    ("models/ok/adapters/config.json", "rejected"),
    ("models/7b-chat/v1/config.json", "rejected"),
    ("models/Gemma/v1/config.json", "rejected"),
    ("models/ok/V1/config.json", "rejected"),
    ("models/ok/v_1/config.json", "rejected"),
    ("models/" + "m" * 64 + "/v1/config.json", "rejected"),
    ("models/ok/v1/sub/dir/deep.safetensors", "rejected"),
    ("models/README.md", "rejected"),
    ("models/ok/adapters/Bad_Name/adapter_config.json", "rejected"),
    ("elsewhere/model.safetensors", "ignored"),
    ("models-old/ok/v1/config.json", "ignored"),
    ("notes/models/ok/v1/config.json", "ignored"),
]


def manifest_for(model: str, request_id: str, files: dict[str, bytes]) -> bytes:
    """The manifest a row writes last: generated, or one of the row's deliberate corruptions."""
    mode = files.get("modeldrop-manifest.json")
    content = {k: v for k, v in files.items() if k != "modeldrop-manifest.json"}
    listed = _manifest_files(content)
    body: dict[str, Any] = {
        "format": "modeldrop-manifest/1",
        "model": model,
        "version": "v1",
        "request_id": request_id,
        "files": listed,
    }
    if mode is None:
        pass
    elif mode == b"SIZE":
        listed[0]["size"] += 1
    elif mode == b"CRC":
        listed[0]["crc32c"] = "AAAAAA=="
    elif mode == b"OTHER":
        body["model"] = "someone-else"
    elif mode == b"TRAVERSAL":
        listed.append({"name": "../../state/x.json", "size": 1, "crc32c": "AAAAAA=="})
    else:
        return mode
    return json.dumps(body).encode()
