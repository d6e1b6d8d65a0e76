"""`python -m serving --model DIR|gs://... [vLLM flags]`: the entry point Vertex AI runs."""

from __future__ import annotations

import json
import logging
import signal
import sys
import time
from collections.abc import Sequence
from types import FrameType

import uvicorn

from serving import logs
from serving.app import create_app
from serving.engine import Phase
from serving.settings import Settings, SettingsError
from serving.startup import Phases, process_started_monotonic


class DrainingServer(uvicorn.Server):
    """Uvicorn, which already drains connections on SIGTERM; we also stop admitting new requests."""

    def __init__(self, config: uvicorn.Config, on_exit: object) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if callable(self._on_exit):
            self._on_exit(sig)
        super().handle_exit(sig, frame)


def main(argv: Sequence[str] | None = None) -> int:
    phases = Phases(process_started_monotonic())
    entered = time.monotonic()
    try:
        settings = Settings.load(
            argv
        )  # imports vLLM, for its parser: most of the time before listening
    except SettingsError as error:
        print(
            json.dumps({"severity": "ERROR", "message": f"bad settings: {error}"}), file=sys.stderr
        )
        return 2
    logs.configure(settings.log_level)
    phases.record("python_and_imports", phases.origin, entered)
    phases.record("settings", entered, time.monotonic())
    if settings.unused_env:
        logging.getLogger("serving").warning(
            "environment variables that name no flag were not used",
            extra={"variables": list(settings.unused_env)},
        )
    server: DrainingServer | None = None

    def stop_serving() -> None:
        if server is not None:
            server.should_exit = True

    app = create_app(settings, on_fatal=stop_serving, phases=phases)

    def drain(sig: int) -> None:
        if app.state.phase is not Phase.FAILED:
            app.state.phase = Phase.DRAINING
        logging.getLogger("serving").info(
            "signal received: admitting no new requests, finishing those in flight",
            extra={"signal": signal.Signals(sig).name, "grace_s": settings.drain_grace_s},
        )

    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,  # RequestContext writes one structured line per request
        timeout_graceful_shutdown=int(settings.drain_grace_s),
        timeout_keep_alive=75,  # longer than Google's front ends keep idle connections
    )
    server = DrainingServer(config, drain)
    server.run()
    return 1 if app.state.phase is Phase.FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
