#!/usr/bin/env bash
# Prints the paths of the provider schemas pinned in scripts/provider-schemas.txt, one a line, building
# any that is missing: the binding wheel is downloaded once (pip, --require-hashes, no dependencies),
# its schema extracted by scripts/provider_schema.py into the cache outside the repo, the wheel dropped.
# A fresh machine takes ~20 s (about 140 MB of wheels); a warm one answers at once.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
cache=${MODELDROP_CACHE:-$HOME/.cache/modeldrop}/provider-schemas
mkdir -p "$cache"
# A changed extractor makes new schemas: its hash is part of every file name.
extractor=$(sha256sum "$root/scripts/provider_schema.py" | cut -c1-8)

grep -v '^#' "$root/scripts/provider-schemas.txt" | while read -r requirement sha256 provider version; do
  [ -n "$requirement" ] || continue
  schema="$cache/${provider//\//-}-$version-${sha256:0:16}-$extractor.json"
  if [ ! -f "$schema" ]; then
    echo "extracting the $provider $version schema from $requirement (once)" >&2
    work=$(mktemp -d)
    printf '%s --hash=sha256:%s\n' "$requirement" "$sha256" > "$work/requirements.txt"
    "$python" -m pip download --quiet --disable-pip-version-check --no-deps --require-hashes \
      -r "$work/requirements.txt" -d "$work" >&2
    "$python" "$root/scripts/provider_schema.py" extract "$work"/*.whl "$schema.partial"
    mv "$schema.partial" "$schema"
    rm -rf "$work"
  fi
  echo "$schema"
done
