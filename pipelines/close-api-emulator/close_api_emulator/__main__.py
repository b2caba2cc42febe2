"""`close-api-emulator`: serve a seeded Close account on 127.0.0.1 until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from .server import serve


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="close-api-emulator",
        description="Serve a local Close CRM API emulator, seeded with a generated account.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    parser.add_argument("--port", type=_non_negative_int, default=8765)
    parser.add_argument("--sms", type=_non_negative_int, default=10_000, help="SMS to generate")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rps", type=float, default=None, help="requests/s per key (default: off)")
    parser.add_argument("--latency-ms", type=_non_negative_int, default=0)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    serve(
        port=args.port,
        sms=args.sms,
        seed=args.seed,
        rps=args.rps,
        latency_ms=args.latency_ms,
        host=args.host,
    )


if __name__ == "__main__":
    main()
