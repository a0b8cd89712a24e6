"""Serving the bot: Slack's events endpoint over HTTP or its Socket Mode connection, and the probes.

HTTP mode runs Bolt's WSGI adapter on waitress (a production WSGI server): `/slack/events` and the probes
(`/healthz`, `/readyz`, `/metrics`) on one port. Socket Mode (SLACK_APP_TOKEN) has no Slack endpoint, so the
probes get a small server of their own on another port.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from taobot.slack.app import Runtime

log = logging.getLogger(__name__)

SLACK_EVENTS_PATH = "/slack/events"


def wsgi_app(runtime: Runtime):
    """/slack/events for Slack, /healthz for probes; everything else 404."""
    from slack_bolt.adapter.wsgi import SlackRequestHandler

    slack = SlackRequestHandler(runtime.app, path=SLACK_EVENTS_PATH)

    def application(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") == "GET" and path in HEALTH_PATHS:
            return health(runtime, path, start_response)
        return slack(environ, start_response)

    return application


HEALTH_PATHS = ("/healthz", "/readyz", "/metrics")


def health(runtime: Runtime, path: str, start_response):
    if path == "/healthz":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok\n"]
    if path == "/readyz":
        ok, lines = runtime.readiness()
        start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")])
        return [("\n".join(lines) + "\n").encode()]
    from taobot import metrics

    start_response("200 OK", [("Content-Type", "text/plain; version=0.0.4; charset=utf-8")])
    return [metrics.render()]


def health_app(runtime: Runtime):
    """Only /healthz, /readyz and /metrics: the separate port used in Socket Mode."""

    def application(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") == "GET" and path in HEALTH_PATHS:
            return health(runtime, path, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]

    return application


class HealthServer:
    """The probes' server on its own thread; `close()` stops it from any thread."""

    def __init__(self, server, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread

    def close(self, timeout: float = 5.0) -> None:
        from waitress import wasyncore

        # Its sockets are closed on its own loop's thread: closed from here, the loop's select() would be left
        # holding a closed descriptor. With nothing left in its map, the loop returns.
        self._server.trigger.pull_trigger(lambda: wasyncore.close_all(self._server._map))
        self._thread.join(timeout)
        self._server.task_dispatcher.shutdown()


def serve_health_in_background(runtime: Runtime, host: str, port: int) -> HealthServer:
    import waitress.server

    server = waitress.server.create_server(health_app(runtime), host=host, port=port, threads=2, ident="taobot")
    thread = threading.Thread(target=server.run, name="health", daemon=True)
    thread.start()
    log.info("health and metrics on http://%s:%d (/healthz, /readyz, /metrics)", host, port)
    return HealthServer(server, thread)


# waitress for HTTP mode. A request holds a worker only while Bolt verifies, parses and acks it (the work
# after the ack is on other threads), so a few workers cover Slack's bursts: on two cores, 4 left bursts
# queueing and 16 made the `/tao status` answers contend for the database (benchmarks/slack_ack.py).
# Connections beyond the workers wait in waitress's queue; the connection limit is far above a burst.
HTTP_SERVER_OPTIONS = {"threads": 8, "connection_limit": 1000, "asyncore_use_poll": True, "ident": "taobot"}


def serve_wsgi(application, host: str, port: int) -> None:
    """Serve a WSGI app on waitress with taobot's HTTP settings (the ack benchmark's baseline uses it too)."""
    import waitress

    waitress.serve(application, host=host, port=port, **HTTP_SERVER_OPTIONS)


def serve_http(runtime: Runtime, host: str, port: int) -> None:
    log.info("serving Slack HTTP mode on http://%s:%d%s", host, port, SLACK_EVENTS_PATH)
    serve_wsgi(wsgi_app(runtime), host, port)


def serve_socket_mode(runtime: Runtime, app_token: str) -> None:
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    log.info("connecting to Slack in Socket Mode")
    handler = SocketModeHandler(runtime.app, app_token)
    runtime.socket_client = handler.client
    handler.start()
