"""superact data (placeholder until its issue lands)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="not yet available")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    raise ValueError("'superact data' is not implemented yet")
