"""The ``memnets`` command line."""

from __future__ import annotations

import argparse

import memnets


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="memnets", description="Neural networks with memory: train, evaluate, explain."
    )
    parser.add_argument("--version", action="version", version=f"memnets {memnets.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("demo", help="a short tour of the recurrent core")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        from memnets.demo import run_demo

        run_demo()
        return 0
    parser.print_help()
    return 2
