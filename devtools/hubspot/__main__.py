"""`python -m devtools.hubspot --port PORT --token TOKEN [--per-ten-seconds N] [--daily N]
[--latency MIN MAX]`: the fake HubSpot in a process of its own (a bench's HubSpot must not share
the bench's GIL). `--token` may repeat, as `TOKEN` or `TOKEN=ACCOUNT`."""

from __future__ import annotations

import argparse
import signal
import threading

from devtools.hubspot.server import FakeHubSpot


def main(argv: list[str] | None = None) -> None:
    """Serve until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m devtools.hubspot", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", action="append", required=True, help="TOKEN or TOKEN=ACCOUNT")
    parser.add_argument("--per-ten-seconds", type=int, default=190)
    parser.add_argument("--daily", type=int, default=None)
    parser.add_argument(
        "--latency", type=float, nargs=2, default=(0.0, 0.0), metavar=("MIN", "MAX")
    )
    args = parser.parse_args(argv)
    tokens = {
        token: account or "portal-1"
        for token, _, account in (given.partition("=") for given in args.token)
    }
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    hubspot = FakeHubSpot(
        tokens,
        per_ten_seconds=args.per_ten_seconds,
        daily=args.daily,
        latency=(args.latency[0], args.latency[1]),
        port=args.port,
    )
    hubspot.keep_alive = True  # as HubSpot's API: a client's session reuses its connections
    with hubspot:
        print(f"fake HubSpot listening on {hubspot.url}", flush=True)
        stop.wait()


if __name__ == "__main__":
    main()
