"""APScheduler 3 wiring for the monitor, and nothing else.

One interval job ("monitor-cycle") lives in a persistent SQLAlchemy job
store on the bot's own database, with `coalesce=True` and a misfire grace
time, so a restart after downtime runs one catch-up cycle instead of a
burst. Each run first takes (or renews) a lease row in the database: when
two instances share a database, only the lease holder runs cycles; the
other waits as a standby and takes over once the lease expires. A cycle
renews the lease as it goes (`keep_lease`, between its steps), so a cycle
longer than the lease never lets a standby post the same slot; if the lease
was lost anyway, the cycle stops before its next step. Once an hour a cycle
also forgets Slack deliveries older than a day.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid

log = logging.getLogger(__name__)

JOB_ID = "monitor-cycle"
LEASE = "scheduler"
PRUNE_EVERY_S = 3600
DELIVERIES_KEPT_S = 86400  # Slack retries a delivery for minutes, never a day later


class LeaseLost(Exception):
    """Another instance holds the scheduler lease now: this cycle must stop."""


# The persistent job store stores a reference to a module-level function; the
# running process registers what that function drives.
_ACTIVE: dict = {}


def run_cycle() -> None:
    monitor = _ACTIVE.get("monitor")
    store = _ACTIVE.get("store")
    if monitor is None or store is None:
        return
    holder, ttl = _ACTIVE["holder"], _ACTIVE["lease_ttl"]
    if not store.acquire_lease(LEASE, holder, ttl):
        if _ACTIVE.get("role") != "standby":
            log.warning("another taobot instance holds the scheduler lease; waiting as a standby")
        _ACTIVE["role"] = "standby"
        return
    if _ACTIVE.get("role") != "active":
        log.info("scheduler lease taken; this instance runs monitoring")
    _ACTIVE["role"] = "active"
    _ACTIVE["renewed"] = time.monotonic()
    start = time.perf_counter()
    try:
        stats = monitor.cycle()
        _ACTIVE["last_cycle"] = time.time()
        _ACTIVE["last_stats"] = stats
        prune_if_due(store)
    except LeaseLost:
        log.warning("the scheduler lease passed to another instance during a cycle; this one stopped it")
        _ACTIVE["role"] = "standby"
    except Exception:  # the next cycle must still run
        log.exception("monitor cycle failed")
    finally:
        _ACTIVE["last_duration"] = time.perf_counter() - start


def keep_lease() -> None:
    """Renew the lease once a third of it has passed; raise LeaseLost if another instance holds it now."""
    store, holder, ttl = _ACTIVE.get("store"), _ACTIVE.get("holder"), _ACTIVE.get("lease_ttl")
    if store is None or holder is None:
        return
    now = time.monotonic()
    if now - _ACTIVE.get("renewed", 0.0) < ttl / 3:
        return
    if not store.acquire_lease(LEASE, holder, ttl):
        raise LeaseLost()
    _ACTIVE["renewed"] = now


def prune_if_due(store) -> None:
    if time.monotonic() - _ACTIVE.get("pruned", float("-inf")) >= PRUNE_EVERY_S:
        store.prune_deliveries(DELIVERIES_KEPT_S)
        _ACTIVE["pruned"] = time.monotonic()


def start(db_path: str, monitor, store, poll_seconds: int):
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    _ACTIVE.update(monitor=monitor, store=store, holder=holder, lease_ttl=max(15.0, poll_seconds * 3.0), role=None)
    monitor.keep_alive = keep_lease
    scheduler = BackgroundScheduler(
        jobstores={
            "default": SQLAlchemyJobStore(
                url=f"sqlite:///{db_path}",
                tablename="apscheduler_jobs",
                engine_options={"connect_args": {"timeout": 30}},
            )
        },
        executors={"default": ThreadPoolExecutor(1)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": max(30, poll_seconds * 2)},
        timezone="UTC",
    )
    scheduler.add_job(
        run_cycle, "interval", seconds=poll_seconds, id=JOB_ID, replace_existing=True, next_run_time=_now()
    )
    scheduler.start()
    log.info("monitoring every %ds (holder %s)", poll_seconds, holder)
    return scheduler


def stop(scheduler) -> None:
    try:
        scheduler.shutdown(wait=True)
    finally:
        store, holder = _ACTIVE.get("store"), _ACTIVE.get("holder")
        if store is not None and holder and _ACTIVE.get("role") == "active":
            store.release_lease(LEASE, holder)
        _ACTIVE.clear()


def status() -> dict:
    return {k: _ACTIVE.get(k) for k in ("role", "last_cycle", "last_duration", "holder")}


def _now():
    from datetime import datetime, timezone

    return datetime.now(timezone.utc)
