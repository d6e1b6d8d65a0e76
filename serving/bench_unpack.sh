#!/usr/bin/env bash
# Runs on the GPU machine with no network: joins the parts serving/bench_pack.sh made, checks them and
# unpacks the site folder; then PYTHONPATH=SITE puts vLLM 0.32 and torch 2.13 ahead of the image's own.
# Usage (from the repo root there): bash DEST/install.sh DEST STAGE SITE
#   DEST: the folder with payload.sha256; STAGE: where the payload.partNN files were gathered.
set -euo pipefail
dest=${1:?usage: install.sh DEST STAGE SITE}
stage=${2:?usage: install.sh DEST STAGE SITE}
site=${3:?usage: install.sh DEST STAGE SITE}
# The image's own site-packages (before SITE shadows it): its CUDA libraries serve torch 2.13 too.
image_site=$(env -u PYTHONPATH python3 -c 'import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))')
cat "$stage"/payload.part* > "$stage/payload.tgz"
[ "$(sha256sum "$stage/payload.tgz" | cut -d' ' -f1)" = "$(cat "$dest/payload.sha256")" ] \
  || { echo "payload checksum mismatch: a part is missing; gather every part again" >&2; exit 4; }
rm -rf "$site" && mkdir -p "$site"
tar -xzf "$stage/payload.tgz" -C "$site"
rm -f "$stage/payload.tgz"
# torch finds its CUDA libraries at ../../nvidia/<lib>/lib from its own folder (RPATH): point SITE's
# nvidia/ at the image's, except the newer NCCL the payload brings.
mkdir -p "$site/nvidia"
for lib in "$image_site"/nvidia/*/; do
  name=$(basename "$lib")
  [ -e "$site/nvidia/$name" ] || ln -s "${lib%/}" "$site/nvidia/$name"
done
echo "unpacked $(du -sh "$site" | cut -f1) into $site; CUDA libraries from $image_site/nvidia:" \
  "$(ls "$site/nvidia" | tr '\n' ' ')"
