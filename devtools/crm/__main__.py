"""`python -m devtools.crm --port PORT --secret SECRET [--full]`: the fake CRM in a process of
its own, in counting mode unless `--full` (a bench's CRM must not share the bench's GIL)."""

from __future__ import annotations

import argparse
import signal
import threading

from devtools.crm.server import FakeCrm


def main(argv: list[str] | None = None) -> None:
    """Serve until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m devtools.crm", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--full", action="store_true", help="keep and check every operation")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to answer a batch")
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    crm = FakeCrm(args.secret, counting=not args.full, port=args.port)
    crm.keep_alive = True  # as a real CRM's API: the service's session reuses its connections
    crm.delay(args.delay)
    with crm:
        print(f"fake CRM listening on {crm.url}", flush=True)
        stop.wait()


if __name__ == "__main__":
    main()
