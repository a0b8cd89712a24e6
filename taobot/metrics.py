"""Prometheus metrics (prometheus-client), served at /metrics.

Counters are incremented where the thing happens; gauges that describe
stored state (monitored jobs by state, scheduler lag) are computed when
/metrics is scraped, from the database and the scheduler's last cycle.
A private registry keeps tests and repeated app builds independent.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

REGISTRY = CollectorRegistry(auto_describe=True)

INTAKES_STARTED = Counter("taobot_intakes_started_total", "Launch intakes started", registry=REGISTRY)
INTAKES_COMPLETED = Counter("taobot_intakes_completed_total", "Launch intakes that reached complete", registry=REGISTRY)
PREFLIGHTS = Counter("taobot_preflights_total", "Preflight runs", ["platform", "result"], registry=REGISTRY)
LAUNCHES = Counter("taobot_launches_total", "Launch attempts", ["platform", "outcome"], registry=REGISTRY)
POLL_SECONDS = Histogram(
    "taobot_poll_cycle_seconds",
    "Time spent polling one backend in one cycle",
    ["backend"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
THREAD_POST_FAILURES = Counter(
    "taobot_thread_post_failures_total",
    "Status posts into a launch thread that failed (retried with backoff, per thread)",
    ["error"],
    registry=REGISTRY,
)
SLACK_CALLS = Counter("taobot_slack_api_calls_total", "Slack Web API calls", ["method"], registry=REGISTRY)
SLACK_ERRORS = Counter(
    "taobot_slack_api_errors_total",
    "Slack Web API errors (429 counted as ratelimited)",
    ["method", "error"],
    registry=REGISTRY,
)
SLACK_PACING_WAIT = Histogram(
    "taobot_slack_pacing_wait_seconds",
    "Time a Slack Web API call waited for its turn under the rate-limit pacing",
    ["method"],
    buckets=(0, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
SLACK_PACING_CAPPED = Counter(
    "taobot_slack_pacing_capped_total",
    "Slack calls that went ahead after the longest pacing wait (Slack's Retry-After then applies)",
    ["method"],
    registry=REGISTRY,
)
AFTER_ACK_WAIT = Histogram(
    "taobot_after_ack_wait_seconds",
    "Time work a Slack listener handed over after its ack waited for its turn (its thread's earlier work, a worker)",
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300),
    registry=REGISTRY,
)


class _StateCollector:
    """Jobs by state and scheduler lag, read at scrape time."""

    def __init__(self) -> None:
        self.store = None
        self.scheduler_status = None
        self.after_ack_pending = None  # () -> int: work handed over after Slack acks, not yet done

    def collect(self):
        jobs = GaugeMetricFamily("taobot_monitored_jobs", "Launches by normalised job state", labels=["state"])
        if self.store is not None:
            try:
                counts = self.store.launch_counts_by_state()
            except Exception:  # noqa: BLE001 - a scrape must not fail because the DB is busy
                counts = {}
            for state, count in counts.items():
                jobs.add_metric([state], count)
        yield jobs
        lag = GaugeMetricFamily("taobot_scheduler_lag_seconds", "Seconds since the last completed monitor cycle")
        status = self.scheduler_status() if self.scheduler_status else {}
        last = status.get("last_cycle")
        lag.add_metric([], time.time() - last if last else float("nan"))
        yield lag
        if self.after_ack_pending is not None:
            pending = GaugeMetricFamily(
                "taobot_after_ack_pending", "Work handed over after a Slack ack and not yet done (queued or running)"
            )
            pending.add_metric([], self.after_ack_pending())
            yield pending


STATE = _StateCollector()
REGISTRY.register(STATE)


def render() -> bytes:
    return generate_latest(REGISTRY)
