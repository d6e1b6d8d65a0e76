#!/usr/bin/env bash
# The GPU run of the serving benchmark: builds a random-weight Gemma-2B-shape model (once), then
# benchmarks the given targets on it. Usage: bench_gpu.sh OUT_DIR [TARGETS] [CONCURRENCY] [BENCH ARGS...]
# (arguments after CONCURRENCY go to serving.bench as they are, e.g. --server-args "--flag value").
# BENCH_EXTRA="--startup 3" measures time to ready instead (cold, restored compile cache, vllm serve).
set -euo pipefail
out=${1:?usage: bench_gpu.sh OUT_DIR [TARGETS] [CONCURRENCY] [BENCH ARGS...]}
targets=${2:-container,vllm}
concurrency=${3:-1,16,64,256}
model=${MODEL_DIR:-/tmp/gemma-2b-random}
logs=${LOG_DIR:-/tmp/bench-logs}
if [ ! -f "$model/model.safetensors" ]; then
  python3 -m local.tiny_model "$model" --shape gemma-2b --device cuda
fi
name=$(echo "$targets" | tr ',' '-')
status=0
python3 -m serving.bench --model "$model" --dtype bfloat16 --max-model-len 2048 \
  --prompt-tokens 128 --output-tokens 128 --concurrency "$concurrency" --targets "$targets" \
  --blocking-max-concurrency 16 --log-dir "$logs" --out "$out/$name.json" \
  --title "random-weight Gemma-2B shape" ${BENCH_EXTRA:-} "${@:4}" 2>&1 | tee "$out/$name.txt" || status=$?
# The servers' logs come back whether or not the run succeeded.
for target in ${targets//,/ }; do
  tail -c 2000000 "$logs/$target.log" > "$out/$target.log" || true
  for f in "$logs/$target".pyspy*; do if [ -f "$f" ]; then cp "$f" "$out/"; fi; done
done
if [ -d "$logs/startup" ]; then
  mkdir -p "$out/startup"
  for log in "$logs"/startup/*.log; do tail -c 1000000 "$log" > "$out/startup/$(basename "$log")"; done
fi
exit "$status"
