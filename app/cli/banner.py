"""What `loke-sync run` says when it starts: where the dashboard is, where its admin token is,
and how to stop. (The log lines that follow are the processes' own.)"""

from __future__ import annotations

import ipaddress

from app.core.admin_token_place import admin_token_place
from app.core.config import Settings
from app.core.processes import browse_url


def run_banner(settings: Settings, host: str, port: int) -> str:
    """The lines `run` prints once web, worker and beat are started."""
    url = browse_url(host, port)
    lines = [
        "",
        "loke-sync is running: web, worker and beat",
        f"  dashboard     {url}",
        f"  admin token   {admin_token_place(settings)}",
        f"  webhooks      {url}webhooks/loke/<orgId>",
    ]
    if _every_interface(host):
        lines.append(f"  listening on  every interface ({host}), not only this machine")
    lines += ["Ctrl-C stops all three.", ""]
    return "\n".join(lines)


def _every_interface(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False
