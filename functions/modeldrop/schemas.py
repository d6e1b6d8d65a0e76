"""The JSON Schemas of commands and results, generated from the models and checked into schemas/."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from modeldrop.commands import command_json_schema
from modeldrop.results import result_json_schema

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"


def schemas() -> dict[str, dict[str, Any]]:
    command = {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "Command"}
    result = {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "Result"}
    return {
        "command.schema.json": {**command, **command_json_schema()},
        "result.schema.json": {**result, **result_json_schema()},
    }


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="rewrite schemas/*.json")
    args = parser.parse_args()
    for name, schema in schemas().items():
        if args.write:
            (SCHEMA_DIR / name).write_text(render(schema))
            print(f"wrote schemas/{name}")
        else:
            print(render(schema))


if __name__ == "__main__":
    main()
