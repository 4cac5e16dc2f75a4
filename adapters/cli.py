"""The ``p2pos`` command.

p2pos id [--home DIR] [--show-key-path]   create or show the local identity
p2pos check-id PEER_ID                     validate a peer id (typo check)
p2pos demo                                 two local peers talk over UDP
p2pos version                              the version, the Python, and which core runs
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import trio

from p2pos.proto import InvalidPeerId, PeerId, __version__

from . import build_info, keystore


def _cmd_id(args: argparse.Namespace) -> int:
    home = Path(args.home) if args.home else keystore.default_home()
    path = keystore.key_path(home)
    identity, created = keystore.load_or_create(path)
    if created:
        print(f"created a new identity in {path}", file=sys.stderr)
    elif keystore.insecure_permissions(path):
        print(f"warning: {path} is readable by other users; run: chmod 600 {path}", file=sys.stderr)
    print(identity.peer_id)
    if args.show_key_path:
        print(path)
    return 0


def _cmd_check_id(args: argparse.Namespace) -> int:
    try:
        peer = PeerId.parse(args.peer_id)
    except InvalidPeerId as exc:
        print(f"p2pos: invalid peer id: {exc}", file=sys.stderr)
        return 1
    print(f"valid peer id {peer}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    trio.run(run_demo)
    return 0


def _cmd_version(args: argparse.Namespace) -> int:
    for line in build_info.describe(build_info.build_info()):
        print(line)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="p2pos", description="p2pos peer-to-peer application server")
    parser.add_argument("--version", action="version", version=f"p2pos {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p_id = sub.add_parser("id", help="create or show the local identity")
    p_id.add_argument("--home", help=f"state folder (default ${keystore.DEFAULT_HOME_ENV} or ~/.config/p2pos)")
    p_id.add_argument("--show-key-path", action="store_true", help="also print the key file's path")
    p_id.set_defaults(func=_cmd_id)
    p_check = sub.add_parser("check-id", help="check a peer id for typos")
    p_check.add_argument("peer_id")
    p_check.set_defaults(func=_cmd_check_id)
    p_demo = sub.add_parser("demo", help="two local peers handshake over UDP and exchange messages")
    p_demo.set_defaults(func=_cmd_demo)
    p_version = sub.add_parser(
        "version", help="show the version, the Python, and whether the core is compiled (mypyc) or pure Python"
    )
    p_version.set_defaults(func=_cmd_version)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except keystore.KeyStoreError as exc:
        print(f"p2pos: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return result


if __name__ == "__main__":
    sys.exit(main())
