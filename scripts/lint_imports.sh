#!/usr/bin/env bash
# Checks the import contracts in pyproject.toml ([tool.importlinter]) with import-linter, from its own
# environment cached outside the repo (scripts/cached_env.sh, keyed by a hash of
# scripts/import-linter-requirements.txt): decisions and contracts stay free of Google's clients and of
# the adapters. import-linter reads the source only, so the project's packages need not be installed.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
cache=${MODELDROP_CACHE:-$HOME/.cache/modeldrop}

# shellcheck source=scripts/cached_env.sh
source "$root/scripts/cached_env.sh"

env=$(cached_env import-linter "$root/scripts/import-linter-requirements.txt")
cd "$root"
PYTHONPATH="$root/functions${PYTHONPATH:+:$PYTHONPATH}" exec "$env/bin/lint-imports" "$@"
