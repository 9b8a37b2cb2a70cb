"""Command line: ``superact run`` and ``superact data stats``.

Each sub-command lives in its own module with ``add_parser(subparsers)`` and a
``run(args) -> int`` function. Exit status: 0 on success; 2 for bad input,
reported as one line (an :class:`~superact_lens.errors.InputError`, or
argparse's usage + error for bad arguments); 130 on Ctrl-C; any other exception
is a bug and keeps its traceback (Python's exit status 1).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import platform
import sys

from superact_lens.errors import InputError

__all__ = ["main", "build_parser"]

_M_ARENA_MAX = -8  # glibc's malloc.h


def _limit_malloc_arenas(n: int = 2) -> None:
    """Cap glibc's malloc arenas at ``n`` for this process (``MALLOC_ARENA_MAX``, which
    wins when set). By default glibc gives threads up to 8 arenas per core, and memory
    freed in one is not reused by another: tokeniser, torch and calibration threads
    then spread a run's temporaries over many arenas. Measured on 10^5 synthetic
    samples (benchmarks/bench_scale.py's command): peak RSS 751-797 MiB by default
    (3 runs), 664-745 MiB with 2 arenas (6 runs), same wall time. Processes this one
    starts (``--nproc``) inherit the setting through the environment. No-op off glibc."""
    if "MALLOC_ARENA_MAX" in os.environ or platform.libc_ver()[0] != "glibc":
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # pragma: no cover -- glibc under another name
        return
    libc.mallopt(_M_ARENA_MAX, n)
    os.environ["MALLOC_ARENA_MAX"] = str(n)  # read by glibc when a child starts


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
    _limit_malloc_arenas()  # before torch or a tokeniser starts threads
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
