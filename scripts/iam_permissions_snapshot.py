"""Writes tests/terraform/data/gcp_permissions.json from a folder of published predefined IAM roles.

The input is the output of IAM's `roles.get` (view FULL) for every predefined role, one JSON file a
role, as the public IAM dataset publishes it daily (github.com/iann0036/iam-dataset, gcp/roles/).
A permission exists if some predefined role includes it: Google's permissions reference is built the
same way. Only the services modeldrop grants from are kept, with the predefined roles it grants.

    python scripts/iam_permissions_snapshot.py ROLES_DIR SOURCE_NOTE > tests/terraform/data/gcp_permissions.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SERVICES = ("aiplatform.", "monitoring.", "storage.", "pubsub.", "run.", "iam.", "cloudfunctions.")
GRANTED_ROLES = (
    "roles/storage.objectUser",
    "roles/storage.objectViewer",
    "roles/storage.objectCreator",
    "roles/pubsub.publisher",
    "roles/pubsub.subscriber",
    "roles/run.invoker",
    "roles/iam.serviceAccountUser",
    "roles/iam.serviceAccountTokenCreator",
    "roles/eventarc.eventReceiver",
    "roles/logging.logWriter",
    "roles/artifactregistry.writer",
    "roles/cloudkms.cryptoKeyEncrypterDecrypter",
    "roles/monitoring.viewer",
    "roles/aiplatform.user",
)


def main(roles_dir: str, source: str) -> None:
    permissions: set[str] = set()
    roles: dict[str, list[str]] = {}
    for path in sorted(Path(roles_dir).glob("*.json")):
        role = json.loads(path.read_text())
        included = role.get("includedPermissions", [])
        permissions.update(p for p in included if p.startswith(SERVICES))
        if role["name"] in GRANTED_ROLES:
            roles[role["name"]] = sorted(included)
    missing = set(GRANTED_ROLES) - set(roles)
    assert not missing, f"no published role {sorted(missing)}"
    json.dump(
        {
            "source": source,
            "services": list(SERVICES),
            "permissions": sorted(permissions),
            "roles": roles,
        },
        sys.stdout,
        indent=0,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
