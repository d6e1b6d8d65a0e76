"""A server whose weights come from gs:// (fake-gcs-server), drained by SIGTERM with a request in flight."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from local.processes import stop

pytestmark = pytest.mark.engine


def test_weights_from_gs_serve_and_sigterm_drains_in_flight_requests(
    gcs_host: str, tiny_model: Path, tmp_path: Path, launch: Callable[..., Any]
) -> None:
    """Loaded from AIP_STORAGE_URI; after SIGTERM a streaming request still finishes, new ones are refused."""
    from google.cloud import storage

    bucket = storage.Client(project="modeldrop-test").create_bucket("weights-serving")
    for path in tiny_model.iterdir():
        bucket.blob(f"models/tiny/v1/{path.name}").upload_from_filename(str(path))
    env = {
        "AIP_STORAGE_URI": "gs://weights-serving/models/tiny/v1",
        "MODELDROP_SERVING_CACHE_DIR": str(tmp_path / "cache"),
        "MODELDROP_SERVING_MAX_MODEL_LEN": "2048",
        "MODELDROP_SERVING_DRAIN_GRACE_S": "60",
    }
    server = launch([], tmp_path / "serving.log", env=env)
    try:
        assert (
            tmp_path / "cache" / "weights-serving--models--tiny--v1" / "model.safetensors"
        ).is_file()
        body = {"prompt": "the model", "max_tokens": 800, "ignore_eos": True, "stream": True}
        with httpx.Client(base_url=server.url, timeout=120) as http:
            with http.stream("POST", "/v1/completions", json=body) as stream:
                lines = stream.iter_lines()
                first = next(line for line in lines if line.startswith("data: "))
                assert json.loads(first[6:])["choices"][0]["finish_reason"] is None
                # The container runtime signals PID 1 only; the engine process gets nothing directly.
                os.kill(server.child.pid, signal.SIGTERM)
                time.sleep(0.5)
                with pytest.raises(httpx.HTTPError):
                    refused = httpx.post(
                        server.url + "/v1/completions", json={"prompt": "hi"}, timeout=5
                    )
                    refused.raise_for_status()
                events = [first, *(line for line in lines if line.startswith("data: "))]
        assert events[-1] == "data: [DONE]"
        last = json.loads(events[-2][6:])
        assert last["choices"][0]["finish_reason"] == "length"
        texts = "".join(json.loads(e[6:])["choices"][0]["text"] for e in events[:-1])
        assert texts
        # Uvicorn re-raises the signal once drained, so the exit status is the usual one for SIGTERM.
        assert server.child.popen.wait(timeout=60) in (0, -signal.SIGTERM)
        log = server.log()
        assert "admitting no new requests" in log
        assert "engine shut down" in log
    finally:
        stop(server.child, grace_s=10)
