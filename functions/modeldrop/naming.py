"""The names Vertex AI accepts, checked before Vertex is called, so a bad name is a clear result, not a lost upload.

Sources (docs/vertex-fidelity.md has the rows):
- `UploadModelRequest.model_id`: up to 63 characters of `[a-z0-9_-]`, "the first character cannot
  be a number or hyphen". A model name is also a label value and a folder name, so modeldrop asks
  for the intersection: label-safe and starting with a letter.
- `Model.version_aliases`: "[a-z][a-zA-Z0-9-]{0,126}[a-z0-9]"; every model has a `default` alias.
- `CreateEndpointRequest.endpoint_id`: a first letter allows up to 63 of `[a-z0-9-]` ending in a
  letter or digit; a first digit allows up to 9 digits with no leading zero.
"""

from __future__ import annotations

import re

# Vertex label values and modeldrop's names share this alphabet; it also rules out path tricks.
_LABEL_SAFE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
# A model's LoRA adapters live in models/<model>/adapters/<adapter>/.
ADAPTERS_FOLDER = "adapters"
# Aliases a version folder may not take: Vertex's own, the one modeldrop moves to the newest
# version, and the folder that holds a model's adapters.
RESERVED_VERSIONS = frozenset({"default", "latest", ADAPTERS_FOLDER})
_ALIAS = re.compile(r"[a-z][a-zA-Z0-9-]{0,126}[a-z0-9]")
_NUMERIC_ENDPOINT = re.compile(r"[1-9][0-9]{0,8}")


def is_label_safe(name: str) -> bool:
    """True for 1-63 characters of [a-z0-9-], starting and ending with a letter or digit."""
    return bool(_LABEL_SAFE.fullmatch(name))


def label_safe_problem(kind: str, name: str) -> str | None:
    """Why `name` can't be a label-safe name of `kind`, or None when it can."""
    if is_label_safe(name):
        return None
    return (
        f"{kind} name {name!r} is not label-safe: use 1-63 characters of a-z, 0-9 and '-', "
        "starting and ending with a letter or digit"
    )


def version_alias(version: str) -> str:
    """The Vertex version alias for a version folder (aliases must start with a letter)."""
    return version if version[:1].isalpha() else f"v{version}"


def model_name_problem(name: str) -> str | None:
    """Why `name` can't be a model (folder, registry id and label), or None."""
    problem = label_safe_problem("model", name)
    if problem:
        return problem
    if not name[0].isalpha():
        return (
            f"model name {name!r} starts with a digit, which Vertex AI refuses as a model id: "
            f"start it with a letter (e.g. 'm{name}')"
        )
    return None


def version_name_problem(name: str) -> str | None:
    """Why `name` can't be a version folder, or None."""
    problem = label_safe_problem("version", name)
    if problem:
        return problem
    alias = version_alias(name)
    if name in RESERVED_VERSIONS or alias in RESERVED_VERSIONS:
        return (
            f"version name {name!r} is reserved ({', '.join(sorted(RESERVED_VERSIONS))} are "
            "aliases or folders modeldrop and Vertex AI use): name the folder otherwise, e.g. 'v1'"
        )
    if not _ALIAS.fullmatch(alias):
        return f"version {name!r} gives the alias {alias!r}, which Vertex AI refuses"
    return None


def endpoint_id_problem(name: str) -> str | None:
    """Why `name` can't be a Vertex endpoint id, or None."""
    if name[:1].isdigit():
        if _NUMERIC_ENDPOINT.fullmatch(name):
            return None
        return (
            f"endpoint id {name!r} starts with a digit: Vertex AI then allows only up to 9 digits "
            "with no leading zero; start it with a letter"
        )
    if is_label_safe(name):
        return None
    return (
        f"endpoint id {name!r} must be 1-63 characters of a-z, 0-9 and '-', starting with a "
        "letter and ending with a letter or digit"
    )
