#!/usr/bin/env bash
# Packs vLLM 0.32.0, torch 2.13.0 and what they import (serving/bench_offline_requirements.txt) for a
# GPU machine with no network (Python 3.12, x86-64): one gzipped tar of a ready site folder, split into
# parts small enough to carry one at a time. Run on a machine with network access, from the repo root:
#   bash serving/bench_pack.sh DEST          (DEST: a git-ignored folder, e.g. .gpu)
# DEST gets part00 .. partNN/ (<= PART_MIB MiB each), payload.sha256 and install.sh; on the GPU machine,
# with the parts gathered in STAGE: bash DEST/install.sh DEST STAGE SITE, then PYTHONPATH=SITE.
# WHEELS (default: a temporary folder) keeps downloaded wheels between runs.
set -euo pipefail
dest=${1:?usage: bench_pack.sh DEST}
part_mib=${PART_MIB:-56}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
wheels=${WHEELS:-$work/wheels}
plat=()
for p in manylinux_2_28 manylinux_2_27 manylinux_2_26 manylinux_2_24 manylinux_2_17 manylinux2014 \
  manylinux_2_31 manylinux_2_34 manylinux_2_35 manylinux_2_5 manylinux1; do
  plat+=(--platform "${p}_x86_64")
done
target=(--only-binary=:all: --python-version 3.12 --implementation cp "${plat[@]}" --platform any)
mkdir -p "$wheels"
python3 -m pip download -q --no-deps "${target[@]}" -d "$wheels" -r "$here/bench_offline_requirements.txt"
# Only the wheels the list names (WHEELS may hold others from earlier runs).
mapfile -t files < <(python3 - "$here/bench_offline_requirements.txt" "$wheels" <<'EOF'
import re, sys, pathlib
names = {}
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if line:
        name, version = line.split("==")
        names[re.sub(r"[-_.]+", "_", name).lower()] = version
for wheel in sorted(pathlib.Path(sys.argv[2]).glob("*.whl")):
    name, version = wheel.name.split("-")[:2]
    if names.get(re.sub(r"[-_.]+", "_", name).lower()) == version:
        print(wheel)
EOF
)
[ "${#files[@]}" -eq "$(grep -cv '^\s*\(#\|$\)' "$here/bench_offline_requirements.txt")" ] \
  || { echo "expected one wheel per requirement, found ${#files[@]}" >&2; exit 1; }
python3 -m pip install -q --no-deps --no-index --no-compile --no-cache-dir "${target[@]}" \
  --target "$work/site" "${files[@]}"
# Never loaded by a single-GPU Hopper (sm_90) server of a dense bf16 model: console scripts, vLLM's
# optional Rust frontend (VLLM_USE_RUST_FRONTEND), FlashAttention 2 (Hopper runs FlashAttention 3;
# vLLM's interface imports each version's library only if present), torch's lazily loaded CUDA linear
# algebra library, Triton's ptxas for sm_100+ and its static profiling libraries and test library,
# torch's protoc, NCCL's device-code bitcode. Less to carry: a smaller payload, fewer parts.
rm -rf "$work/site/bin" "$work/site/vllm/vllm-rs" "$work/site/torch/bin/protoc"* \
  "$work/site/vllm/vllm_flash_attn/_vllm_fa2_C.abi3.so" "$work/site/torch/lib/libtorch_cuda_linalg.so" \
  "$work/site/triton/backends/nvidia/bin/ptxas-blackwell" \
  "$work/site/triton/backends/nvidia/lib/cupti/"*.a \
  "$work/site/triton/instrumentation/libGPUInstrumentationTestLib.so" \
  "$work/site/nvidia/nccl/lib/libnccl_device."*
tar -C "$work/site" -cf - . | gzip -6 > "$work/payload.tgz"
rm -rf "$dest"/part[0-9][0-9]
mkdir -p "$dest"
(cd "$work" && split -b "${part_mib}M" -d payload.tgz payload.part)
n=0
for f in "$work"/payload.part*; do
  d=$(printf '%s/part%02d' "$dest" $n)
  mkdir -p "$d"
  mv "$f" "$d/"
  n=$((n + 1))
done
sha256sum "$work/payload.tgz" | cut -d' ' -f1 > "$dest/payload.sha256"
cp "$here/bench_unpack.sh" "$dest/install.sh"
echo "$n parts of <= ${part_mib} MiB in $dest; $(du -sh "$work/site" | cut -f1) unpacked;" \
  "payload sha256 $(cat "$dest/payload.sha256")"
