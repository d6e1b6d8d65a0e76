"""Benchmark baseline only: the popular recipe this container replaces, offline `LLM.generate` in an async handler.

It blocks the event loop for a whole generation, so requests run one at a time. Never serve with it.
`python -m serving.bench_blocking --model DIR --port PORT [--max-model-len N] [--dtype D]`
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from fastapi import FastAPI, Request


def build_app(llm: Any) -> FastAPI:
    from vllm import SamplingParams

    app = FastAPI()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/completions")
    async def completions(request: Request) -> dict[str, Any]:
        body = await request.json()
        params = SamplingParams(
            max_tokens=int(body.get("max_tokens", 16)),
            temperature=float(body.get("temperature", 1.0)),
            ignore_eos=bool(body.get("ignore_eos", False)),
        )
        prompt = body["prompt"]
        inputs = {"prompt_token_ids": prompt} if isinstance(prompt, list) else prompt
        # The anti-pattern under test: a blocking call inside an async handler.
        output = llm.generate([inputs], params, use_tqdm=False)[0]
        out = output.outputs[0]
        return {
            "object": "text_completion",
            "created": int(time.time()),
            "choices": [{"index": 0, "text": out.text, "finish_reason": out.finish_reason}],
            "usage": {
                "prompt_tokens": len(output.prompt_token_ids),
                "completion_tokens": len(out.token_ids),
            },
        }

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--max-model-len", type=int, default=None)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    args = parser.parse_args()
    import uvicorn
    from vllm import LLM

    llm = LLM(
        model=args.model,
        max_model_len=args.max_model_len,
        dtype=args.dtype,
        gpu_memory_utilization=args.gpu_memory_utilization,
    )
    uvicorn.run(build_app(llm), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
