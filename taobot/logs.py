"""Logging setup: one line per event, text or JSON, secrets redacted.

Log calls pass ids with `extra={"intake": ..., "channel": ..., "thread_ts": ...,
"job": ...}`; both formats print whichever of them are present.
"""

from __future__ import annotations

import json
import logging
import sys
import time

from taobot.secrets import REDACTOR, RedactingFilter

CONTEXT_KEYS = ("channel", "thread_ts", "intake", "launch", "job", "platform", "user")


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        ctx = " ".join(f"{k}={getattr(record, k)}" for k in CONTEXT_KEYS if getattr(record, k, None) is not None)
        line = f"{ts}Z {record.levelname:<7} {record.name}: {record.getMessage()}" + (f" [{ctx}]" if ctx else "")
        if record.exc_text:
            line += "\n" + record.exc_text
        return REDACTOR.redact(line)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in CONTEXT_KEYS:
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_text:
            entry["exception"] = record.exc_text
        return REDACTOR.redact(json.dumps(entry, default=str))


def configure(level: str = "INFO", fmt: str = "text", stream=None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # The Slack libraries log request and response bodies at DEBUG; those can
    # hold modal submissions, so they never go below INFO.
    for name in ("slack_bolt", "slack_sdk", "urllib3", "paramiko", "botocore", "kubernetes"):
        logging.getLogger(name).setLevel(max(logging.getLevelName(level), logging.INFO))
    # APScheduler logs every run of the poll job at INFO; only its problems matter.
    logging.getLogger("apscheduler").setLevel(max(logging.getLevelName(level), logging.WARNING))
    # waitress warns "Task queue depth is N" for every request that waits for a worker: in a burst of Slack
    # requests that is one line per request, which costs the ack path more than the wait it reports.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
