#!/usr/bin/env bash
# Runs checkov from its own environment: checkov ships a fork of python-hcl2 that replaces the `hcl2`
# module the project's own tests import, so it can't live in .venv. The environment is cached outside
# the repo, keyed by a hash of scripts/checkov-requirements.txt and the Python version (the pattern of
# scripts/bootstrap.sh), so a fresh machine builds it once (~40 s) and a warm one starts at once.
# Usage: scripts/checkov.sh [checkov arguments...]
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
cache=${MODELDROP_CACHE:-$HOME/.cache/modeldrop}

# base_env NAME REQUIREMENTS: print the path of a cached environment holding REQUIREMENTS, building it if absent.
base_env() {
  local name=$1 requirements=$2 key base
  key=$( { "$python" --version; cat "$requirements"; } | sha256sum | cut -c1-16)
  base="$cache/$name-$key"
  if [ ! -f "$base/.complete" ]; then
    echo "building the $name environment in $base (once per requirements file)" >&2
    rm -rf "$base.partial"
    mkdir -p "$cache"
    "$python" -m venv "$base.partial"
    "$base.partial/bin/pip" install --quiet --disable-pip-version-check --upgrade pip >&2
    "$base.partial/bin/pip" install --quiet --disable-pip-version-check --no-deps -r "$requirements" >&2
    # venv scripts carry their interpreter's absolute path: build under .partial, then fix them up.
    rm -rf "$base"
    mv "$base.partial" "$base"
    grep -rlI --null "$base.partial" "$base/bin" | xargs -0 -r sed -i "s#$base.partial#$base#g"
    touch "$base/.complete"
  fi
  echo "$base"
}

env=$(base_env checkov "$root/scripts/checkov-requirements.txt")
exec "$env/bin/checkov" "$@"
