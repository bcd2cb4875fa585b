"""The ``tether`` command line (``python -m tether``): ``run``, ``init`` and ``daemon``.

A command-line tool is judged by its exit status and its first line of stderr. So
every error is one line on stderr (``tether run: error: ...``), and the statuses are
``timeout(1)``'s, which scripts already test for: 125 when tether itself fails (bad
usage included), 126 when the command cannot be executed, 127 when it is not found,
the command's own code otherwise, and 128+N when it was killed by signal N.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from .._version import __version__
from . import _daemon, _init, _run
from ._common import TETHER_FAILED, CommandError

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """argparse with tether's error convention: one line on stderr, exit status 125."""

    def error(self, message: str) -> NoReturn:
        self.exit(TETHER_FAILED, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The whole command line, every subcommand included."""
    parser = _Parser(
        prog="tether",
        description="Run commands with tether's guarantees: every child reaped, signalled "
        "through pidfds, never outliving its scope.",
        epilog="Run 'tether COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"tether {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    for module in (_run, _init, _daemon):
        module.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse *argv* (``sys.argv[1:]`` by default), run the command, return the exit status."""
    parser = build_parser()
    words = list(sys.argv[1:] if argv is None else argv)
    command = None
    if "--" in words:  # everything after the first "--" is the command, verbatim
        split = words.index("--")
        words, command = words[:split], words[split + 1 :]
    args = parser.parse_args(words)
    if command is not None:
        if args.cmd:
            parser.error(f"unexpected arguments before '--': {' '.join(args.cmd)}")
        args.cmd = command
    try:
        return int(args.handler(args))
    except CommandError as exc:
        print(f"tether {args.command}: {exc}", file=sys.stderr)
        return exc.status
