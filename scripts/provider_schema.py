"""Terraform provider schemas, offline: extracted from the published CDK Terrain bindings, checked against HCL.

The prebuilt provider bindings (cdktn-provider-google and friends, pinned with hashes in
scripts/provider-schemas.txt) are generated from `terraform providers schema -json` of one exact
provider version, and their JavaScript keeps every Terraform name: each resource class carries its
`tfResourceType` and a `synthesizeHclAttributes()` listing each argument with `isBlock`, nested blocks
are converted by one `<struct>ToHclTerraform` function each, computed attributes are read through
`getStringAttribute('<name>')`-style getters, and the `.d.ts` marks optional arguments with `?`.

    provider_schema.py extract WHEEL OUT.json    one binding wheel -> {"provider", "version", "resources", "data_sources"}
    provider_schema.py check SCHEMA.json... -- FOLDER...   every resource, data source, argument, block
                                                           and reference in FOLDER/*.tf; exit 1 on a problem
"""

from __future__ import annotations

import io
import json
import re
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# --- extraction ------------------------------------------------------------------------------

PRIMITIVE_CONVERTERS = {"string", "number", "boolean", "hash", "listMapper", "hashMapper", "any"}
ATTR = re.compile(
    r"^\s{8,}(?P<name>\w+): \{\s*value: (?P<value>.*?),\s*isBlock: (?P<block>true|false),"
    r"\s*type: \"(?P<type>\w+)\",\s*storageClassType: \"(?P<storage>\w+)\",\s*\}",
    re.M | re.S,
)
CONVERTER = re.compile(r"(?<![.\w])(?P<name>[a-z]\w*)ToHclTerraform\b")
GETTER = re.compile(r"this\.(?:get\w*Attribute|interpolationForAttribute)\('(?P<name>\w+)'\)")
NESTED_OUTPUT = re.compile(
    r"_\w+ = new (?P<cls>\w+?)(?:List|Map|OutputReference)\(this, \"(?P<name>\w+)\""
)
INTERFACE = re.compile(
    r"^export interface (?P<name>\w+)(?: extends [^{]+)? \{\n(?P<body>.*?)^\}", re.M | re.S
)
PROPERTY = re.compile(r"^\s*readonly (?P<camel>\w+)(?P<optional>\??):", re.M)
ANCHOR = re.compile(r"\{@link https://registry\.terraform\.io/\S+#(?P<snake>\w+) ")
SECTION = re.compile(
    r"^(?:function (?P<fn>\w+)ToHclTerraform\(struct\)|class (?P<cls>\w+) extends)", re.M
)
RESOURCE_TYPE = re.compile(r'static tfResourceType = "(?P<type>[\w-]+)";')


def _sections(js: str) -> Iterator[tuple[str, str, str]]:
    """('function'|'class', name, body) for each top-level converter function and class."""
    marks = list(SECTION.finditer(js))
    for index, mark in enumerate(marks):
        end = marks[index + 1].start() if index + 1 < len(marks) else len(js)
        body = js[mark.start() : end]
        if mark.group("fn"):
            yield "function", mark.group("fn"), body
        else:
            yield "class", mark.group("cls"), body


def _optional(dts: str) -> dict[str, dict[str, bool]]:
    """Interface name -> {snake_case argument: optional?} from the .d.ts."""
    found: dict[str, dict[str, bool]] = {}
    for interface in INTERFACE.finditer(dts):
        body = interface.group("body")
        flags: dict[str, bool] = {}
        start = 0
        for prop in PROPERTY.finditer(body):
            # The argument's Terraform name is the anchor of the docs link in its own comment.
            anchors = ANCHOR.findall(body, start, prop.start())
            if anchors:
                flags[anchors[-1]] = bool(prop.group("optional"))
            start = prop.end()
        found[interface.group("name")] = flags
    return found


def _attrs(body: str) -> list[re.Match[str]]:
    start = body.find("const attrs = {")
    return list(ATTR.finditer(body, start)) if start >= 0 else []


def _module(js: str, dts: str) -> list[tuple[str, dict[str, Any]]]:
    """(terraform type, schema) for the resource or data source one binding module defines."""
    functions: dict[str, str] = {}
    classes: dict[str, str] = {}
    for kind, name, body in _sections(js):
        (functions if kind == "function" else classes)[name] = body
    optional = _optional(dts)

    def computed(cls: str) -> tuple[set[str], dict[str, str]]:
        body = classes.get(cls, "")
        nested = {m.group("name"): m.group("cls") for m in NESTED_OUTPUT.finditer(body)}
        return {m.group("name") for m in GETTER.finditer(body)}, nested

    def schema(struct: str, body: str, cls: str, depth: int = 0) -> dict[str, Any]:
        flags = optional.get(struct, {})
        attributes: dict[str, str] = {}
        blocks: dict[str, Any] = {}
        for attr in _attrs(body):
            name = attr.group("name")
            required = flags.get(name) is False
            converter = next(
                (
                    m.group("name")
                    for m in CONVERTER.finditer(attr.group("value"))
                    if m.group("name") not in PRIMITIVE_CONVERTERS
                ),
                None,
            )
            if attr.group("block") == "true" and converter and depth < 12:
                nested_struct = converter[0].upper() + converter[1:]
                nested = schema(
                    nested_struct,
                    functions.get(converter, ""),
                    nested_struct + "OutputReference",
                    depth + 1,
                )
                nested["required"] = required
                blocks[name] = nested
            else:
                attributes[name] = "required" if required else "optional"
        getters, nested_outputs = computed(cls)
        for name in getters:
            attributes.setdefault(name, "computed")
        for name, nested_cls in nested_outputs.items():
            if name not in blocks and name not in attributes and depth < 12:
                nested = schema(nested_cls, "", nested_cls + "OutputReference", depth + 1)
                nested["computed"] = True
                blocks[name] = nested
        return {"attributes": dict(sorted(attributes.items())), "blocks": blocks}

    found = []
    for cls, body in classes.items():
        kind = RESOURCE_TYPE.search(body)
        if not kind or "synthesizeHclAttributes()" not in body:
            continue
        if "extends cdktn.TerraformProvider" in body:
            found.append(("provider", schema(cls + "Config", body, cls)))
        else:
            found.append((kind.group("type"), schema(cls + "Config", body, cls)))
    return found


def extract(wheel: Path) -> dict[str, Any]:
    """The schema of every resource and data source in one binding wheel."""
    with zipfile.ZipFile(wheel) as archive:
        (inner,) = [name for name in archive.namelist() if name.endswith(".jsii.tgz")]
        metadata = next(name for name in archive.namelist() if name.endswith("METADATA"))
        headline = re.search(
            r"bindings for (?P<source>\S+) provider version (?P<version>\S+)",
            archive.read(metadata).decode(),
        )
        tgz = archive.read(inner)
    assert headline, f"{wheel.name} does not say which provider version it binds"
    modules: dict[str, dict[str, str]] = {}
    with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as bundle:
        for member in bundle:
            match = re.fullmatch(
                r"package/lib/(?P<module>[^/]+)/index\.(?P<ext>js|d\.ts)", member.name
            )
            if match and member.isfile():
                handle = bundle.extractfile(member)
                assert handle is not None
                modules.setdefault(match.group("module"), {})[match.group("ext")] = (
                    handle.read().decode()
                )
    resources: dict[str, Any] = {}
    data_sources: dict[str, Any] = {}
    provider: dict[str, Any] = {"attributes": {}, "blocks": {}}
    for module, files in sorted(modules.items()):
        for kind, body in _module(files.get("js", ""), files.get("d.ts", "")):
            if kind == "provider":
                provider = body
            else:
                (data_sources if module.startswith("data-") else resources)[kind] = body
    return {
        "provider": headline.group("source"),
        "version": headline.group("version"),
        "config": provider,
        "resources": resources,
        "data_sources": data_sources,
    }


# --- checking --------------------------------------------------------------------------------

# Arguments Terraform itself gives every resource and data source (not part of a provider schema).
META_ARGUMENTS = {
    "count",
    "for_each",
    "provider",
    "depends_on",
    "lifecycle",
    "provisioner",
    "connection",
}
# Blocks whose contents Terraform itself defines.
META_BLOCKS = {"lifecycle", "provisioner", "connection"}
REFERENCE = re.compile(
    r"(?<![\w.\"])(?P<data>data\.)?(?P<type>(?:google|google_beta|time|archive)_\w+)\.(?P<name>\w+)(?P<path>(?:\[[^\]]*\]|\.\w+)*)"
)
MODULE_CALL = re.compile(r"(?<![\w.])module\.(?P<name>\w+)\.(?P<output>\w+)")
DYNAMIC_BLOCK = "dynamic"


def _clean(value: Any) -> Any:
    """python-hcl2 keeps the quotes of literal strings and block labels, and adds markers: drop them."""
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items() if not str(k).startswith("__")}
    if isinstance(value, list):
        return [_clean(item) for item in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _documents(folder: Path) -> list[tuple[Path, dict[str, Any]]]:
    import hcl2

    return [(path, _clean(hcl2.loads(path.read_text()))) for path in sorted(folder.glob("*.tf"))]


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _body_problems(
    where: str, body: dict[str, Any], schema: dict[str, Any], top: bool = False
) -> list[str]:
    """Arguments and blocks of one block body that its schema doesn't have, or lacks and requires."""
    problems: list[str] = []
    attributes: dict[str, str] = schema["attributes"]
    blocks: dict[str, Any] = schema["blocks"]
    present: set[str] = set()
    for key, value in body.items():
        if top and key in META_ARGUMENTS:
            present.add(key)
            continue
        if key == DYNAMIC_BLOCK:
            for dynamic in value if isinstance(value, list) else [value]:
                for label, content in dynamic.items():
                    present.add(label)
                    if label not in blocks:
                        problems.append(f"{where}: no block type named {label!r} (dynamic)")
                        continue
                    for inner in content.get("content", []) or [{}]:
                        problems += _body_problems(f"{where}.{label}", inner, blocks[label])
            continue
        present.add(key)
        if key in blocks:
            if blocks[key].get("computed"):
                problems.append(f"{where}: {key!r} is computed, not an argument")
                continue
            if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
                problems.append(
                    f"{where}: {key!r} is a block: write `{key} {{ ... }}`, not `{key} = ...`"
                )
                continue
            for item in value:
                problems += _body_problems(f"{where}.{key}", item, blocks[key])
        elif key in attributes:
            if attributes[key] == "computed":
                problems.append(f"{where}: {key!r} is computed by the provider, not an argument")
        else:
            problems.append(f"{where}: unsupported argument or block {key!r}")
    for name, kind in attributes.items():
        if kind == "required" and name not in present:
            problems.append(f"{where}: the argument {name!r} is required")
    for name, block in blocks.items():
        if block.get("required") and name not in present:
            problems.append(f"{where}: at least one {name!r} block is required")
    return problems


def _reference_problems(
    where: str, text: str, declared: dict[tuple[str, str, str], dict[str, Any]]
) -> list[str]:
    problems = []
    for found in REFERENCE.finditer(text):
        mode = "data" if found.group("data") else "resource"
        key = (mode, found.group("type"), found.group("name"))
        if key not in declared:
            problems.append(f"{where}: {found.group(0)} refers to an undeclared {mode}")
            continue
        schema = declared[key]
        for step in re.findall(r"\[[^\]]*\]|\.\w+", found.group("path")):
            if step.startswith("["):
                continue
            name = step[1:]
            if name in schema["blocks"]:
                schema = schema["blocks"][name]
            elif name in schema["attributes"] or name == "id":
                break
            else:
                problems.append(f"{where}: {found.group(0)}: no attribute {name!r}")
                break
    return problems


def _module_problems(path: Path, document: dict[str, Any], folder: Path) -> list[str]:
    """A local module call passes only variables the module declares, every one it requires, and reads only its outputs."""
    problems: list[str] = []
    outputs: dict[str, set[str]] = {}
    for block in document.get("module", []):
        for name, body in block.items():
            source = folder / str(body.get("source", ""))
            if not str(body.get("source", "")).startswith(".") or not source.is_dir():
                continue
            child = _documents(source)
            variables = {
                variable: spec
                for _, doc in child
                for block in doc.get("variable", [])
                for variable, spec in block.items()
            }
            outputs[name] = {
                output for _, doc in child for block in doc.get("output", []) for output in block
            }
            given = set(body) - {
                "source",
                "version",
                "providers",
                "count",
                "for_each",
                "depends_on",
            }
            problems += [
                f"{path.name}: module.{name}: the module has no variable {v!r}"
                for v in sorted(given - set(variables))
            ]
            problems += [
                f"{path.name}: module.{name}: the variable {v!r} is required"
                for v, spec in sorted(variables.items())
                if "default" not in spec and v not in given
            ]
    for text in _strings(document):
        for found in MODULE_CALL.finditer(text):
            known = outputs.get(found.group("name"))
            if known is not None and found.group("output") not in known:
                problems.append(f"{path.name}: {found.group(0)}: the module has no such output")
    return problems


def check(folder: Path, schemas: list[dict[str, Any]]) -> list[str]:
    """Every problem the provider schemas find in FOLDER/*.tf (one module, without its child modules)."""
    resources: dict[str, Any] = {}
    data_sources: dict[str, Any] = {}
    for provider in schemas:
        resources.update(provider["resources"])
        data_sources.update(provider["data_sources"])
    documents = _documents(folder)
    declared: dict[tuple[str, str, str], dict[str, Any]] = {}
    problems: list[str] = []
    bodies: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    for path, document in documents:
        for mode, known in (("resource", resources), ("data", data_sources)):
            for block in document.get(mode, []):
                for kind, named in block.items():
                    for name, body in named.items():
                        where = f"{path.name}: {'data.' if mode == 'data' else ''}{kind}.{name}"
                        if kind not in known:
                            problems.append(f"{where}: the providers have no {mode} type {kind!r}")
                            continue
                        declared[(mode, kind, name)] = known[kind]
                        bodies.append((where, body, known[kind]))
    for where, body, schema in bodies:
        problems += _body_problems(where, body, schema, top=True)
    configs = {provider["provider"].rsplit("/", 1)[-1]: provider["config"] for provider in schemas}
    for path, document in documents:
        for block in document.get("provider", []):
            for name, body in block.items():
                where = f"{path.name}: provider {name}"
                if name not in configs:
                    problems.append(f"{where}: no schema for this provider")
                else:
                    problems += _body_problems(
                        where, {k: v for k, v in body.items() if k != "alias"}, configs[name]
                    )
        problems += _module_problems(path, document, folder)
    for path, document in documents:
        for text in _strings({k: v for k, v in document.items() if k != "terraform"}):
            problems += _reference_problems(path.name, text, declared)
    return sorted(set(problems))


def main(argv: list[str]) -> int:
    if argv[:1] == ["extract"] and len(argv) == 3:
        Path(argv[2]).write_text(json.dumps(extract(Path(argv[1])), separators=(",", ":")))
        return 0
    if argv[:1] == ["check"] and "--" in argv:
        split = argv.index("--")
        schemas = [json.loads(Path(path).read_text()) for path in argv[1:split]]
        problems = [
            f"{folder}/{p}" for folder in argv[split + 1 :] for p in check(Path(folder), schemas)
        ]
        print("\n".join(problems) or "no problems", file=sys.stderr if problems else sys.stdout)
        return 1 if problems else 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
