"""What a newer command does to the commands queued before it on the same endpoint (pure).

A queued command has not started, so a newer one that makes it moot ends it `superseded`:
- the same change again (deploy of the same model version, scale of the same version, an undeploy
  of the same version, wake): the newer one takes it over — duplicates collapse, the newer
  settings win;
- `traffic` after a queued `traffic`: only the newest split would remain, so only it runs;
- `undeploy` of a version after a queued `deploy` naming that version (every queued deploy when the
  undeploy names no version): the deploy would be undone at once, so it never starts;
- `delete-endpoint` after anything queued on that endpoint: it all goes with the endpoint.
Anything else keeps its place and runs in arrival order (an undeploy then a deploy of the same
version redeploys it, as sent). The rules look only at the commands, never at what Vertex serves.
"""

from __future__ import annotations

from modeldrop.commands import Command, DeleteEndpoint, Deploy, Scale, Traffic, Undeploy, Wake


def superseded_by(older: Command, newer: Command) -> str | None:
    """Why `newer` makes the queued `older` moot, or None when `older` must still run."""
    if isinstance(newer, DeleteEndpoint):
        return "the endpoint is deleted after it"
    if isinstance(older, Traffic) and isinstance(newer, Traffic):
        return "a newer traffic split replaces it"
    if isinstance(older, Wake) and isinstance(newer, Wake):
        return "the same wake again"
    if isinstance(older, Scale) and isinstance(newer, Scale) and older.version == newer.version:
        return "a newer scale of the same deployment replaces it"
    if isinstance(older, Undeploy) and isinstance(newer, Undeploy):
        if older.version == newer.version or newer.version is None:
            return "the same undeploy again"
    if isinstance(older, Deploy) and isinstance(newer, Deploy):
        if (older.model, older.version) == (newer.model, newer.version):
            return "a newer deploy of the same version replaces it"
    if isinstance(older, Deploy) and isinstance(newer, Undeploy):
        if newer.version is None or older.version == newer.version:
            return "an undeploy after it would undo it"
    return None
