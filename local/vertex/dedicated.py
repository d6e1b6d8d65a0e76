"""Dedicated endpoints: the DNS name Vertex gives one, and the host its predictions must come to.

`aiplatform/v1/endpoint.proto` (as generated in the SDK, `google/cloud/aiplatform_v1/types/endpoint.py`):
`dedicated_endpoint_enabled` exposes the endpoint "through a dedicated DNS
[Endpoint.dedicated_endpoint_dns] ... Note: Once you enabled dedicated endpoint, you won't be able to
send request to the shared DNS {region}-aiplatform.googleapis.com"; `dedicated_endpoint_dns` is
"Output only ... Format: https://{endpoint_id}.{region}-{uid}.prediction.vertexai.goog". The SDK
(`google/cloud/aiplatform/models.py`, `Endpoint.raw_predict(use_dedicated_endpoint=True)`) builds
`https://{dedicated_endpoint_dns}/v1/{resource_name}:rawPredict`: the field holds a host name.
Locally the DNS is played by the request's Host header (clients connect to the emulator's port and
send `Host: <dedicated dns>`, as `curl --resolve` would).
"""

from __future__ import annotations

import hashlib

from local.vertex.errors import precondition
from local.vertex.fidelity import Fidelity
from local.vertex.resources import Endpoint

DOMAIN = "prediction.vertexai.goog"


def project_number(project: str) -> str:
    """The project's number: a project named by its number is that number; an id gets a stable
    12-digit one derived from it (the emulator has no project registry to look numbers up in)."""
    if project.isdigit():
        return project
    digest = int(hashlib.sha256(project.encode()).hexdigest(), 16)
    return str(10**11 + digest % (9 * 10**11))


def dns(endpoint_name: str) -> str:
    """`{endpoint_id}.{region}-{project_number}.prediction.vertexai.goog` of
    `projects/P/locations/R/endpoints/E` (public clients see Vertex's uid as the project number)."""
    parts = endpoint_name.split("/")
    project, region, endpoint_id = parts[1], parts[3], parts[5]
    return f"{endpoint_id}.{region}-{project_number(project)}.{DOMAIN}"


def host_of(header: str) -> str:
    """The host name of a Host header, its port dropped (`curl --resolve name:PORT:127.0.0.1`)."""
    host = header.strip().lower()
    name, colon, port = host.rpartition(":")
    return name if colon and port.isdigit() else host


def check_host(endpoint: Endpoint, host_header: str, fidelity: Fidelity) -> None:
    """A prediction for a dedicated endpoint must come to its dedicated DNS: anywhere else (the
    shared host) is refused 400 FAILED_PRECONDITION naming the DNS (the code and words are assumed;
    `dedicated_dns_only=off` plays a Vertex that still answers on the shared host)."""
    if not endpoint.dedicated_endpoint_enabled or not fidelity.dedicated_dns_only:
        return
    expected = endpoint.dedicated_endpoint_dns or dns(endpoint.name or "")
    host = host_of(host_header)
    if host != expected:
        raise precondition(
            f"Endpoint {endpoint.name} is a dedicated endpoint: send its predictions to its "
            f"dedicated DNS https://{expected}, not to {host or 'a request without a Host'} "
            "(Endpoint.dedicated_endpoint_dns)."
        )
