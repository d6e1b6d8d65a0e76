"""Resource names, ids, labels and update masks, checked the way Vertex AI checks them."""

from __future__ import annotations

import re
from typing import Any

from local.vertex.errors import invalid

_MODEL_ID = re.compile(r"^[a-z_][a-z0-9_-]{0,62}$")
_ENDPOINT_ID = re.compile(r"^[a-z1-9][a-z0-9-]{0,62}$")
# CreateEndpointRequest.endpoint_id: a letter first, then up to 63 of [a-z0-9-], ending with a
# letter or digit; or a digit first, then only digits, up to 9, no leading zero.
_ENDPOINT_ID_LETTER = re.compile(r"^[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_ENDPOINT_ID_NUMBER = re.compile(r"^[1-9][0-9]{0,8}$")
MAX_DISPLAY_NAME = 128  # Endpoint.display_name, Model.display_name: "up to 128 characters"
_DEPLOYED_MODEL_ID = re.compile(r"^[0-9]{1,10}$")
_ALIAS = re.compile(r"^[a-z][a-zA-Z0-9-]{0,126}[a-z0-9]$")
_LABEL_KEY = re.compile(r"^[\w-]{1,64}$")
_LABEL_VALUE = re.compile(r"^[\w-]{0,64}$")
MAX_LABELS = 64


def location(project: str, location_id: str) -> str:
    return f"projects/{project}/locations/{location_id}"


def split_version(model_id: str) -> tuple[str, str | None]:
    """`M@2` or `M@alias` → ("M", "2"|"alias"); `M` → ("M", None)."""
    base, sep, version = model_id.partition("@")
    return base, (version if sep else None)


def check_model_id(model_id: str) -> None:
    if not _MODEL_ID.match(model_id):
        raise invalid(
            f"Invalid model_id {model_id!r}: up to 63 characters from [a-z0-9_-], "
            "starting with a letter or underscore."
        )


def check_endpoint_id(endpoint_id: str, strict: bool = False) -> None:
    if strict:
        if not (_ENDPOINT_ID_LETTER.match(endpoint_id) or _ENDPOINT_ID_NUMBER.match(endpoint_id)):
            raise invalid(
                f"Invalid endpoint_id {endpoint_id!r}: starting with a letter, up to 63 "
                "characters from [a-z0-9-] ending with a letter or number; starting with a "
                "number, up to 9 digits with no leading zero."
            )
        return
    if not _ENDPOINT_ID.match(endpoint_id) or endpoint_id.endswith("-"):
        raise invalid(
            f"Invalid endpoint_id {endpoint_id!r}: up to 63 characters from [a-z0-9-], "
            "not starting with 0 or a hyphen, not ending with a hyphen."
        )


def check_deployed_model_id(deployed_model_id: str) -> None:
    if not _DEPLOYED_MODEL_ID.match(deployed_model_id):
        raise invalid(f"Invalid deployed model id {deployed_model_id!r}: 1 to 10 digits.")


def check_aliases(aliases: list[str]) -> None:
    if len(set(aliases)) != len(aliases):
        raise invalid(f"Version aliases must be distinct: {aliases}.")
    for alias in aliases:
        if not _ALIAS.match(alias):
            raise invalid(f"Invalid version alias {alias!r}: [a-z][a-zA-Z0-9-]{{0,126}}[a-z0-9].")


def check_display_name(name: str, what: str, strict: bool = False) -> None:
    """Required; with strict rules, at most 128 characters (Unicode code points)."""
    if not name:
        raise invalid(f"{what}.display_name is required.")
    if strict and len(name) > MAX_DISPLAY_NAME:
        raise invalid(
            f"{what}.display_name is {len(name)} characters long; at most {MAX_DISPLAY_NAME}."
        )


def check_labels(labels: dict[str, str], max_length: int = 63) -> None:
    if len(labels) > MAX_LABELS:
        raise invalid(f"At most {MAX_LABELS} labels, got {len(labels)}.")
    for key, value in labels.items():
        if len(key) > max_length or len(value) > max_length:
            raise invalid(
                f"Invalid label {key!r}={value!r}: keys and values are at most {max_length} "
                "characters."
            )
        if not _LABEL_KEY.match(key) or not key[0].isalpha() or key != key.lower():
            raise invalid(
                f"Invalid label key {key!r}: 1 to 63 lowercase letters, digits, _ or -, "
                "starting with a letter."
            )
        if not _LABEL_VALUE.match(value) or value != value.lower():
            raise invalid(
                f"Invalid label value {value!r} for {key!r}: up to 63 lowercase letters, "
                "digits, _ or -."
            )


def mask_paths(update_mask: str | dict[str, Any] | None) -> list[str]:
    """The paths of a FieldMask (`"a,b.c"` or `{"paths": [...]}`), in camelCase."""
    if isinstance(update_mask, dict):
        raw = update_mask.get("paths", [])
        paths = [str(p) for p in raw] if isinstance(raw, list) else []
    else:
        paths = [p for p in (update_mask or "").split(",") if p.strip()]
    return [_camel(p.strip()) for p in paths]


def _camel(path: str) -> str:
    return ".".join(
        part.split("_")[0] + "".join(w.capitalize() for w in part.split("_")[1:])
        for part in path.split(".")
    )
