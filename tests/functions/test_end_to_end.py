"""The whole story with the real engine: the tiny model uploaded, registered, deployed by command, serving tokens."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest
from functions.world import make_world
from support.builders import make_command

from local.processes import stop
from local.vertex.testing import launch
from modeldrop.events import PubSubMessage, StorageObject
from modeldrop.executor import on_message
from modeldrop.results import Status
from modeldrop.sweeper import sweep
from modeldrop.uploads import on_object

SERVING_IMAGE = "us-docker.pkg.dev/modeldrop-test/modeldrop/serving:test"


@pytest.mark.engine
@pytest.mark.stack
@pytest.mark.timeout(420)
def test_an_uploaded_model_serves_tokens_after_a_deploy_command(
    tmp_path: Path, gcs_host: str
) -> None:
    """Weights copied to the bucket become a version; a deploy command makes vLLM load them from gs:// and answer predict."""
    weights = tmp_path / "tiny"
    subprocess.run(
        [sys.executable, "-m", "local.tiny_model", str(weights)], check=True, timeout=120
    )
    vertex = launch(
        tmp_path,
        "--deploy-timeout", "300",
        "--deployment-env", "MODELDROP_SERVING_HOST=127.0.0.1",
        "--deployment-env", "MODELDROP_SERVING_MAX_MODEL_LEN=512",
        "--deployment-env", "VLLM_CPU_KVCACHE_SPACE=1",
    )  # fmt: skip
    try:
        world = make_world(vertex.url, serving_image=SERVING_IMAGE)
        for path in sorted(weights.iterdir()):
            world.put("tiny", "1", path.name, path.read_bytes())
        upload = on_object(
            StorageObject(
                bucket=world.settings.weights_bucket, name="models/tiny/1/config.json", generation=1
            ),
            world.ctx,
            datetime.now(UTC),
        )
        assert upload is not None and upload.status is Status.REGISTERED, upload
        command = {
            **make_command("deploy", model="tiny", machine_type="n1-standard-4"),
            "accelerator": None,
        }
        accepted = on_message(
            PubSubMessage(data=json.dumps(command).encode()), world.ctx, datetime.now(UTC)
        )
        assert accepted is not None and accepted.status is Status.ACCEPTED
        deadline = time.monotonic() + 300
        ready = None
        while ready is None and time.monotonic() < deadline:
            sweep(world.ctx, datetime.now(UTC))
            ready = next(
                (
                    r
                    for r in world.results(timeout_s=0)
                    if r.request_id == command["request_id"] and r.terminal
                ),
                None,
            )
            time.sleep(2)
        assert ready is not None and ready.status is Status.READY, ready
        url = f"{vertex.url}/v1/projects/{world.settings.project}/locations/us-central1/endpoints/tiny:predict"
        body = json.dumps(
            {"instances": [{"prompt": "hello"}], "parameters": {"max_tokens": 8}}
        ).encode()
        request = urllib.request.Request(
            url, data=body, headers={"content-type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
        assert len(answer["predictions"]) == 1 and answer["predictions"][0]
    finally:
        stop(vertex.child)
