#!/usr/bin/env bash
# Runs checkov from its own environment: checkov ships a fork of python-hcl2 that replaces the `hcl2`
# module the project's own tests import, so it can't live in .venv. The environment is cached outside
# the repo, keyed by a hash of scripts/checkov-requirements.txt and the Python version (scripts/cached_env.sh,
# as for .venv's base), so a fresh machine builds it once (~40 s) and a warm one starts at once.
# Usage: scripts/checkov.sh [checkov arguments...]
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
cache=${MODELDROP_CACHE:-$HOME/.cache/modeldrop}

# shellcheck source=scripts/cached_env.sh
source "$root/scripts/cached_env.sh"

env=$(cached_env checkov "$root/scripts/checkov-requirements.txt")
exec "$env/bin/checkov" "$@"
