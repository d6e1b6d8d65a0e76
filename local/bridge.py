"""The storage-event bridge: GCS notifications from a Pub/Sub push become storage CloudEvents, as Eventarc makes them.

fake-gcs-server publishes each object change to a Pub/Sub topic. On Google Cloud, Eventarc turns
object changes into `google.cloud.storage.object.v1.finalized` CloudEvents for `on_upload`; locally
a push subscription delivers the notification here and this bridge re-posts it in that shape
(binary content mode, the object's JSON as data). The function's HTTP status is passed back, so a
failing function makes Pub/Sub redeliver, exactly as Eventarc retries on GCP.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote

FINALIZED = "google.cloud.storage.object.v1.finalized"
# Printable ASCII but space, '"' and '%', which the CloudEvents HTTP binding says to percent-encode.
_HEADER_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"%')
DELETED = "google.cloud.storage.object.v1.deleted"
# The notification's eventType attribute -> the CloudEvent type Eventarc uses for it.
EVENT_TYPES = {"OBJECT_FINALIZE": FINALIZED, "OBJECT_DELETE": DELETED}


class NotANotification(ValueError):
    """The push body is not a GCS notification we can translate; it is acknowledged and dropped."""


@dataclass(frozen=True)
class StorageEvent:
    """One storage CloudEvent, ready to post in binary content mode."""

    id: str
    type: str
    source: str
    subject: str
    time: str
    data: bytes

    def headers(self) -> dict[str, str]:
        return {
            "ce-specversion": "1.0",
            "ce-id": self.id,
            "ce-type": self.type,
            "ce-source": self.source,
            # HTTP headers are Latin-1: the CloudEvents binding percent-encodes what is not
            # printable ASCII (an object named in any script must still reach the function).
            "ce-subject": quote(self.subject, safe=_HEADER_SAFE),
            "ce-time": self.time,
            "content-type": "application/json",
        }


def storage_event(push_body: bytes) -> StorageEvent:
    """The CloudEvent for one Pub/Sub push envelope of a GCS notification; NotANotification if it isn't one."""
    try:
        envelope = json.loads(push_body)
        message = envelope["message"]
        attributes: dict[str, str] = message.get("attributes") or {}
        data = base64.b64decode(message.get("data") or "")
    except (ValueError, KeyError, TypeError) as error:
        raise NotANotification(f"not a Pub/Sub push envelope: {error}") from error
    event_type = EVENT_TYPES.get(attributes.get("eventType", ""))
    bucket, name = attributes.get("bucketId"), attributes.get("objectId")
    if event_type is None or not bucket or not name:
        raise NotANotification(f"not a GCS object notification: attributes {attributes}")
    try:
        obj: dict[str, Any] = json.loads(data) if data else {}
    except ValueError as error:
        raise NotANotification(f"notification data is not the object's JSON: {error}") from error
    time = obj.get("updated") or message.get("publishTime") or datetime.now(UTC).isoformat()
    return StorageEvent(
        # Eventarc's event id is the Pub/Sub message id: duplicates of one delivery share it.
        id=str(message.get("messageId") or message.get("message_id") or f"{bucket}/{name}"),
        type=event_type,
        source=f"//storage.googleapis.com/projects/_/buckets/{bucket}",
        subject=f"objects/{name}",
        time=str(time),
        data=data or json.dumps({"bucket": bucket, "name": name}).encode(),
    )


def deliver(event: StorageEvent, target: str, timeout_s: float) -> int:
    """POST the event to the function; its HTTP status (599 when it could not be reached)."""
    request = urllib.request.Request(
        target, data=event.data, headers=event.headers(), method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except (urllib.error.URLError, OSError):
        return 599


def make_handler(target: str, timeout_s: float, deleted: bool) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "modeldrop-bridge"

        def do_GET(self) -> None:  # readiness
            self._answer(HTTPStatus.OK, b"ok")

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            try:
                event = storage_event(body)
            except NotANotification as error:
                # Acknowledge: redelivering something we can never translate would loop forever.
                self.log_message("dropped: %s", error)
                self._answer(HTTPStatus.NO_CONTENT, b"")
                return
            if event.type == DELETED and not deleted:
                self._answer(HTTPStatus.NO_CONTENT, b"")
                return
            status = deliver(event, target, timeout_s)
            self.log_message("%s %s -> %d", event.type.rsplit(".", 1)[-1], event.subject, status)
            # 2xx acks the push; anything else makes Pub/Sub retry (and dead-letter in the end).
            self._answer(HTTPStatus.OK if status < 300 else HTTPStatus.BAD_GATEWAY, b"")

        def _answer(self, status: HTTPStatus, body: bytes) -> None:
            self.send_response(status)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            sys.stderr.write(f"bridge: {format % args}\n")

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m local.bridge", description=__doc__)
    parser.add_argument("--port", type=int, required=True, help="port to listen on (127.0.0.1)")
    parser.add_argument("--target", required=True, help="URL of the on_upload function")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per delivery")
    parser.add_argument(
        "--deleted", action="store_true", help="also forward object deletions (…object.v1.deleted)"
    )
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer(
        ("127.0.0.1", args.port), make_handler(args.target, args.timeout, args.deleted)
    )
    sys.stderr.write(f"bridge: listening on 127.0.0.1:{args.port}, delivering to {args.target}\n")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
