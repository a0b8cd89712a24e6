"""Container health check: exit 0 when this container's taobot answers GET /healthz with `ok`.

The port is the one the bot serves health on, read from the bot's own command line
(PID 1, or whichever process runs `taobot serve`):

- HTTP mode, `taobot serve --http [--host H] [--port N]`: N (default 3000) on H, or on
  127.0.0.1 when H is a wildcard address;
- Socket Mode, `taobot serve`: TAOBOT_HEALTH_PORT (default 8080) on 127.0.0.1.

Used by the image's HEALTHCHECK and deploy/compose.yml. Standard library only.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path

WILDCARDS = {"", "0.0.0.0", "::", "[::]", "*"}


def serve_args() -> list[str]:
    """The arguments after `serve` of the bot: PID 1 (also under `--init`, whose argv holds the command), else any process."""
    others = sorted((p.name for p in Path("/proc").iterdir() if p.name.isdigit() and p.name != "1"), key=int)
    for pid in ["1", *others]:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").rstrip("\0").split("\0")
        except OSError:
            continue
        if "serve" in argv and any(Path(a).name == "taobot" or a.endswith("taobot.cli") for a in argv):
            return argv[argv.index("serve") + 1 :]
    return []


def option(args: list[str], name: str) -> str | None:
    value = None
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith(name + "="):
            value = arg.split("=", 1)[1]
    return value


def health_url(args: list[str], env: dict[str, str]) -> str:
    if "--http" in args:
        host = option(args, "--host") or "127.0.0.1"
        port = option(args, "--port") or "3000"
    else:
        host = env.get("TAOBOT_HEALTH_HOST", "127.0.0.1")
        port = env.get("TAOBOT_HEALTH_PORT") or "8080"
    if host in WILDCARDS:
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}/healthz"


def main() -> int:
    url = health_url(serve_args(), dict(os.environ))
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            body = response.read(64).decode(errors="replace").strip()
    except Exception as exc:  # refused, timed out, HTTP error: all unhealthy
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1
    if body != "ok":
        print(f"unhealthy: {url} answered {body!r}", file=sys.stderr)
        return 1
    print(f"healthy: {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
