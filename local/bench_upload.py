"""Upload throughput: `modeldrop upload` against `gcloud storage cp` on the same folder, both into fake-gcs-server.

`python -m local.bench_upload [--shards 4] [--shard-mib 64] [--rounds 3]` starts its own local stack
(in-memory GCS, free ports), writes a weights-shaped folder, then alternates the two uploaders
(round by round, so both see the same machine load) and prints the medians and their ratio.
Each `modeldrop upload` goes to a new version (nothing to resume) with `--no-wait`; gcloud copies the
folder's files (`DIR/*`; gcloud's recursive copy asks for the bucket's storageLayout, which
fake-gcs-server does not serve; parallel composite uploads off, as fake-gcs-server's compose fails
them) to a prefix outside models/, so the functions don't register it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from local.stack_state import WEIGHTS_BUCKET, Ports, StackConfig


def write_folder(folder: Path, shards: int, shard_mib: int) -> int:
    """A folder that passes validation: config, tokenizer, index and `shards` random shards; its bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"model-{i + 1:05d}-of-{shards:05d}.safetensors" for i in range(shards)]
    for name in names:
        with open(folder / name, "wb") as out:
            for _ in range(shard_mib):
                out.write(os.urandom(1024 * 1024))
    index = {
        "metadata": {"total_size": shards * shard_mib * 1024 * 1024},
        "weight_map": {f"layer.{i}.weight": name for i, name in enumerate(names)},
    }
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    (folder / "config.json").write_text(json.dumps({"architectures": ["GemmaForCausalLM"]}))
    (folder / "tokenizer.json").write_text("{}")
    return sum(p.stat().st_size for p in folder.iterdir())


def timed(argv: list[str], env: dict[str, str]) -> float:
    began = time.monotonic()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - began
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv[:4])} failed ({done.returncode}):\n{done.stderr[-2000:]}"
        )
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.bench_upload", description=__doc__)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--shard-mib", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        parser.error("gcloud is not on PATH")
    from local.stack import down, up

    scratch = Path(tempfile.mkdtemp(prefix="modeldrop-bench-upload-"))
    config = StackConfig(
        data_dir=scratch / "stack", ports=Ports().with_free_ports(), memory_gcs=True
    )
    try:
        folder = scratch / "weights"
        total = write_folder(folder, args.shards, args.shard_mib)
        state = up(config)
        token = scratch / "token"
        token.write_text("unused-by-fake-gcs-server")
        env = {
            **os.environ,
            "MODELDROP_LOCAL_DIR": str(config.data_dir),
            "MODELDROP_PROFILE": "local",
        }
        gcloud_env = {
            **os.environ,
            "CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE": f"{state.storage_host}/storage/v1/",
            "CLOUDSDK_AUTH_ACCESS_TOKEN_FILE": str(token),
            "CLOUDSDK_CORE_PROJECT": state.project,
            # fake-gcs-server's compose breaks gcloud's parallel composite uploads (files > 150 MiB).
            "CLOUDSDK_STORAGE_PARALLEL_COMPOSITE_UPLOAD_ENABLED": "False",
        }
        files = sorted(str(p) for p in folder.iterdir())
        cli_s, gcloud_s = [], []
        for round_ in range(args.rounds):
            cli_s.append(
                timed(
                    [sys.executable, "-m", "modeldrop.cli", "upload", str(folder), "--model"]
                    + ["bench-cli", "--version", f"r{round_}", "--no-wait"],
                    env,
                )
            )
            gcloud_s.append(
                timed(
                    [
                        gcloud,
                        "storage",
                        "cp",
                        *files,
                        f"gs://{WEIGHTS_BUCKET}/bench/gcloud/r{round_}/",
                    ],
                    gcloud_env,
                )
            )
            print(
                f"round {round_}: modeldrop {cli_s[-1]:.2f}s, gcloud {gcloud_s[-1]:.2f}s",
                flush=True,
            )
        mib = total / 2**20
        cli, gc = statistics.median(cli_s), statistics.median(gcloud_s)
        print(f"folder: {len(files)} files, {mib:.0f} MiB; medians of {args.rounds} rounds")
        print(f"modeldrop upload : {cli:6.2f}s  {mib / cli:7.1f} MiB/s")
        print(f"gcloud storage cp: {gc:6.2f}s  {mib / gc:7.1f} MiB/s")
        print(f"ratio (modeldrop throughput / gcloud throughput): {gc / cli:.2f}")
    finally:
        if (config.data_dir / "stack.json").exists():
            down(config.data_dir)
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
