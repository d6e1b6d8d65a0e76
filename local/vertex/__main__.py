"""`python -m local.vertex --port PORT --data-dir DIR`: serve the emulator until SIGTERM."""

from __future__ import annotations

import argparse
import logging
import sys

import uvicorn

from local.vertex.app import create_app
from local.vertex.settings import from_args, parser


def main(argv: list[str] | None = None) -> int:
    return run(parser().parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Serve with the parsed flags (`modeldrop local vertex` parses the same flags)."""
    try:
        settings = from_args(args)
    except (ValueError, argparse.ArgumentTypeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    # One line per proxied request would drown the deployment events.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if settings.data_dir is not None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=args.log_level.lower(),
        access_log=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
