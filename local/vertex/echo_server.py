"""An echo model server honouring Vertex's container contract: deploys to test without vLLM.

Run as `python -m local.vertex.echo_server [--exit-at-start] [--start-delay SECONDS] [--max-body BYTES]`;
it answers 413 to a larger body, as a model server with a request limit does. It listens on
AIP_HTTP_PORT, answers AIP_HEALTH_ROUTE, echoes instances on AIP_PREDICT_ROUTE (SSE when the body
asks for `stream: true`) and serves minimal OpenAI chat/completions. Given a state bucket
(MODELDROP_STATE_BUCKET, as modeldrop's registry sets it), it writes the container's activity
records too.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from local.vertex.echo_activity import EchoActivity

ENV = dict(os.environ)
MAX_BODY = [0]  # --max-body: bodies over this many bytes get 413 (0: no limit)
ACTIVITY: list[EchoActivity] = []  # set at start where the container would write records


def completion(body: dict[str, Any], chat: bool) -> dict[str, Any]:
    text = f"echo from {ENV.get('AIP_DEPLOYED_MODEL_ID', '?')}"
    choice: dict[str, Any] = (
        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        if chat
        else {"index": 0, "text": text, "finish_reason": "stop"}
    )
    return {
        "id": "cmpl-1",
        "object": "chat.completion" if chat else "text_completion",
        "created": int(time.time()),
        "model": body.get("model", "echo"),
        "choices": [choice],
        "usage": {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4},
    }


def chunks(body: dict[str, Any], chat: bool) -> list[dict[str, Any]]:
    out = []
    for word in ["echo", " from", f" {ENV.get('AIP_DEPLOYED_MODEL_ID', '?')}"]:
        delta: dict[str, Any] = (
            {"index": 0, "delta": {"content": word}, "finish_reason": None}
            if chat
            else {"index": 0, "text": word, "finish_reason": None}
        )
        out.append(
            {
                "id": "cmpl-1",
                "object": "chat.completion.chunk" if chat else "text_completion",
                "created": int(time.time()),
                "model": body.get("model", "echo"),
                "choices": [delta],
            }
        )
    return out


class Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(format % args + "\n")

    def _json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == ENV["AIP_HEALTH_ROUTE"]:
            self._json(200, {"status": "ok"})
        elif self.path == "/env":
            self._json(200, {"env": ENV, "argv": sys.argv[1:]})
        else:
            self._json(404, {"error": "not found"})

    def do_POST(self) -> None:
        if not ACTIVITY:
            self._post()
            return
        with ACTIVITY[0].request():
            self._post()

    def _post(self) -> None:
        raw = self.rfile.read(int(self.headers.get("content-length", 0)))
        if MAX_BODY[0] and len(raw) > MAX_BODY[0]:
            self._json(413, {"error": f"body of {len(raw)} bytes is over {MAX_BODY[0]}"})
            return
        body = json.loads(raw or b"{}")
        chat = self.path == "/v1/chat/completions"
        if self.path == ENV["AIP_PREDICT_ROUTE"] and "instances" in body:
            self._json(
                200,
                {
                    "predictions": [
                        {"echo": i, "deployedModelId": ENV["AIP_DEPLOYED_MODEL_ID"]}
                        for i in body["instances"]
                    ]
                },
            )
        elif self.path in (ENV["AIP_PREDICT_ROUTE"], "/v1/chat/completions", "/v1/completions"):
            chat = chat or "messages" in body
            if body.get("stream"):
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.end_headers()
                for chunk in chunks(body, chat):
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")
            else:
                self._json(200, completion(body, chat))
        else:
            self._json(404, {"error": f"no route {self.path}"})


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--exit-at-start", action="store_true")
    parser.add_argument("--start-delay", type=float, default=0.0)
    parser.add_argument("--max-body", type=int, default=0)
    args, _ = parser.parse_known_args()
    MAX_BODY[0] = args.max_body
    print(f"echo server: args {sys.argv[1:]} storage {ENV.get('AIP_STORAGE_URI')}", flush=True)
    if args.exit_at_start:
        print("echo server: refusing to start (--exit-at-start)", flush=True)
        return 3
    time.sleep(args.start_delay)
    activity = EchoActivity.from_env(ENV)
    if activity is not None:
        ACTIVITY.append(activity)
    server = ThreadingHTTPServer(("127.0.0.1", int(ENV["AIP_HTTP_PORT"])), Handler)
    server.daemon_threads = True
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
