"""Which queued commands a newer one makes moot (pure: commands in, a reason or None out)."""

from __future__ import annotations

from typing import Any

import pytest
from support.builders import make_command

from modeldrop.commands import parse_command
from modeldrop.queue_rules import superseded_by


def cmd(action: str, **fields: Any) -> Any:
    return parse_command(make_command(action, **fields))


@pytest.mark.parametrize(
    ("older", "newer", "moot"),
    [
        (cmd("deploy", version="v2"), cmd("deploy", version="v2", min_replicas=2), True),
        (cmd("deploy", version="v2"), cmd("deploy", version="v3"), False),
        (cmd("deploy", version="v2"), cmd("undeploy", version="v2"), True),
        (cmd("deploy", version="v2"), cmd("undeploy", version="v1"), False),
        (cmd("deploy", version="v2"), cmd("undeploy", version=None), True),
        (cmd("deploy", version=None), cmd("undeploy", version="v2"), False),  # latest: unknown yet
        (cmd("undeploy", version="v2"), cmd("deploy", version="v2"), False),  # redeploy, as sent
        (cmd("undeploy", version="v2"), cmd("undeploy", version="v2"), True),
        (cmd("undeploy", version="v2"), cmd("undeploy", version=None), True),
        (cmd("undeploy", version=None), cmd("undeploy", version="v2"), False),
        (
            cmd("scale", version="v1"),
            cmd("scale", version="v1", min_replicas=3, max_replicas=3),
            True,
        ),
        (cmd("scale", version="v1"), cmd("scale", version="v2"), False),
        (cmd("traffic"), cmd("traffic", split={"v1": 100}), True),
        (cmd("traffic"), cmd("scale"), False),
        (cmd("wake"), cmd("wake"), True),
        (cmd("scale"), cmd("delete-endpoint", force=True), True),
        (cmd("deploy"), cmd("delete-endpoint"), True),
        (cmd("delete-endpoint"), cmd("deploy"), False),
    ],
)
def test_a_newer_command_supersedes_only_what_it_makes_moot(
    older: Any, newer: Any, moot: bool
) -> None:
    assert (superseded_by(older, newer) is not None) is moot
