"""A front for fake-gcs-server that answers the JSON API calls it lacks, and passes everything else on.

`gcloud storage cp` first asks for the bucket's storage layout (`GET /storage/v1/b/<bucket>/
storageLayout`, the JSON API's buckets.getStorageLayout, which says whether the bucket has a
hierarchical namespace); fake-gcs-server answers 404 and gcloud gives up. The front answers it the
way Cloud Storage does for a flat bucket that exists, and streams every other request, body and
answer unchanged, to the emulator.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

_LAYOUT = re.compile(r"^/storage/v1/b/([^/?]+)/storageLayout$")
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}
CHUNK = 1024 * 1024


def storage_layout(bucket: str, location: str) -> dict[str, Any]:
    """buckets.getStorageLayout's answer for a flat (no hierarchical namespace) regional bucket."""
    return {
        "kind": "storage#storageLayout",
        "bucket": bucket,
        "location": location,
        "locationType": "region",
        "hierarchicalNamespace": {"enabled": False},
    }


def make_handler(upstream: str, location: str) -> type[BaseHTTPRequestHandler]:
    target = urlsplit(upstream)
    host = target.hostname or "127.0.0.1"

    class Handler(BaseHTTPRequestHandler):
        server_version = "modeldrop-gcs-front"
        protocol_version = "HTTP/1.1"

        def _proxy(self) -> None:
            path = urlsplit(self.path).path
            layout = _LAYOUT.match(path)
            if layout and self.command == "GET" and self._bucket_exists(layout.group(1)):
                body = json.dumps(storage_layout(unquote(layout.group(1)), location)).encode()
                self._answer(200, body)
                return
            length = int(self.headers.get("content-length") or 0)
            upstream_conn = http.client.HTTPConnection(host, target.port, timeout=600)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            upstream_conn.putrequest(
                self.command, self.path, skip_host=True, skip_accept_encoding=True
            )
            for key, value in headers.items():
                upstream_conn.putheader(key, value)
            upstream_conn.endheaders()
            left = length
            while left > 0:  # uploads stream through in chunks, never held whole
                chunk = self.rfile.read(min(CHUNK, left))
                if not chunk:
                    break
                upstream_conn.send(chunk)
                left -= len(chunk)
            response = upstream_conn.getresponse()
            self.send_response(response.status, response.reason)
            head = self.command == "HEAD"
            for key, value in response.getheaders():
                if key.lower() not in _HOP_BY_HOP and (head or key.lower() != "content-length"):
                    self.send_header(key, value)
            data = response.read()
            if not head:
                self.send_header("content-length", str(len(data)))
            self.end_headers()
            if not head:
                self.wfile.write(data)
            upstream_conn.close()

        def _bucket_exists(self, bucket: str) -> bool:
            conn = http.client.HTTPConnection(host, target.port, timeout=30)
            try:
                conn.request("GET", f"/storage/v1/b/{bucket}")
                return conn.getresponse().status == 200
            finally:
                conn.close()

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _proxy

        def log_message(self, format: str, *args: Any) -> None:
            sys.stderr.write(f"gcs-front: {format % args}\n")

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m local.gcs_front", description=__doc__)
    parser.add_argument("--port", type=int, required=True, help="port to listen on (127.0.0.1)")
    parser.add_argument("--upstream", required=True, help="fake-gcs-server's URL")
    parser.add_argument("--location", default="US-CENTRAL1", help="the buckets' location")
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer(
        ("127.0.0.1", args.port), make_handler(args.upstream, args.location)
    )
    sys.stderr.write(f"gcs-front: 127.0.0.1:{args.port} -> {args.upstream}\n")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
