"""The `modeldrop` command: one code path for the local stack and Google Cloud, chosen by profile."""

from __future__ import annotations

from modeldrop.cli.app import main

__all__ = ["main"]
