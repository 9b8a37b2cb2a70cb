"""Command line: ``superact run`` and ``superact data stats``.

Each sub-command lives in its own module with ``add_parser(subparsers)`` and a
``run(args) -> int`` function. Exit status: 0 on success; 2 for bad input,
reported as one line (an :class:`~superact_lens.errors.InputError`, or
argparse's usage + error for bad arguments); 130 on Ctrl-C; any other exception
is a bug and keeps its traceback (Python's exit status 1).
"""

from __future__ import annotations

import argparse
import sys

from superact_lens.errors import InputError

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    from superact_lens.cli import data as data_cmd
    from superact_lens.cli import detect as detect_cmd
    from superact_lens.cli import localize as localize_cmd
    from superact_lens.cli import run as run_cmd
    from superact_lens.cli import vit as vit_cmd

    parser = argparse.ArgumentParser(
        prog="superact",
        description="SuperActivator concept detection with streaming concept lenses.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run_cmd.add_parser(sub)
    data_cmd.add_parser(sub)
    detect_cmd.add_parser(sub)
    localize_cmd.add_parser(sub)
    vit_cmd.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except InputError as err:
        message = str(err)
        if args.command == "run":  # INTERFACES §2: one line, whatever the error lists
            message = "; ".join(line.strip() for line in message.splitlines() if line.strip())
        print(f"superact: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("superact: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
