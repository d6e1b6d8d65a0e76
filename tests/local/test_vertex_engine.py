"""One real deploy: the tiny model served by `python -m serving` (vLLM on the CPU) through the emulator."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from local.processes import stop
from local.vertex.testing import PARENT, V1, launch

SERVING_IMAGE = "us-docker.pkg.dev/modeldrop-test/modeldrop/serving:test"


@pytest.mark.engine
@pytest.mark.stack
@pytest.mark.timeout(420)
def test_the_tiny_model_serves_tokens_through_the_endpoint(tmp_path: Path) -> None:
    """Deploying modeldrop's serving image starts vLLM; predict, rawPredict and the openai client get tokens."""
    import openai

    weights = tmp_path / "tiny"
    subprocess.run(
        [sys.executable, "-m", "local.tiny_model", str(weights)], check=True, timeout=120
    )
    vertex = launch(
        tmp_path,
        "--deploy-timeout", "300",
        "--deployment-env", "VLLM_CPU_KVCACHE_SPACE=1",
    )  # fmt: skip
    try:
        spec = {
            "imageUri": SERVING_IMAGE,
            "args": ["--model", str(weights), "--max-model-len", "512"],
        }
        body = {"modelId": "tiny", "model": {"displayName": "tiny", "containerSpec": spec}}
        vertex.call("POST", f"{V1}/models:upload", json=body)
        vertex.call(
            "POST", f"{V1}/endpoints", params={"endpointId": "tiny"}, json={"displayName": "tiny"}
        )
        endpoint = f"{PARENT}/endpoints/tiny"
        operation = vertex.wait_operation(
            vertex.start_deploy(f"{PARENT}/models/tiny", endpoint), timeout_s=300
        )
        assert "response" in operation, operation

        answer = vertex.call(
            "POST",
            f"/v1/{endpoint}:predict",
            json={"instances": [{"prompt": "hello"}], "parameters": {"max_tokens": 8}},
        )
        assert len(answer["predictions"]) == 1 and answer["predictions"][0]
        assert answer["deployedModelId"] == operation["response"]["deployedModel"]["id"]

        raw = vertex.call(
            "POST",
            f"/v1/{endpoint}:rawPredict",
            json={"prompt": "hello", "max_tokens": 8, "ignore_eos": True},
        )
        assert raw["usage"]["completion_tokens"] == 8

        client = openai.OpenAI(base_url=f"{vertex.url}/v1/{endpoint}", api_key="unused")
        stream = client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=8, stream=True
        )
        pieces = [
            c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content
        ]
        assert len(pieces) >= 2
    finally:
        stop(vertex.child)
