"""The work a listener hands over once Slack has its ack: run on a pool, in arrival order per launch thread.

Slack wants an answer within 3 s, and a burst of replies, clicks and commands must not wait behind the slow
part of earlier ones (saving answers, redrawing cards, posting inside Slack's rate limits). So a listener acks,
then submits the rest here and returns. Work with the same key (one Slack thread, or one channel's new
launches) runs one piece at a time in the order it arrived, so a person's two quick replies are applied in the
order they sent them; different keys run side by side on the pool.

A retried message or mention is dropped here, after the ack: the piece of work first claims its delivery id
(`claim`, the store's seen_deliveries row), and only the first claim goes on. Other events are claimed before
their ack by `RetriedDeliveries`, Bolt's middleware, as their listeners do their work in place.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from slack_bolt import BoltResponse
from slack_bolt.middleware import Middleware

from taobot import metrics

log = logging.getLogger(__name__)

# Workers mostly wait (on Slack's rate limits, the database, SSH); the ack path never waits for them.
WORKERS = 16
# Event types whose listeners record the delivery after the ack (their work claims it here, in AfterAck).
CLAIMED_AFTER_ACK = frozenset({"message", "app_mention"})


def thread_key(channel: str, thread_ts: str | None) -> str:
    """The key of one Slack thread: its replies, clicks and mentions are handled one at a time, in order."""
    return f"{channel}:{thread_ts}"


def delivery_key(body: dict) -> str | None:
    """The seen_deliveries key of an event (Slack keeps its event_id on every retry of one delivery)."""
    event_id = body.get("event_id")
    return f"event:{event_id}" if event_id else None


class AfterAck:
    def __init__(self, claim: Callable[[str], bool] | None = None, workers: int = WORKERS) -> None:
        self._claim = claim
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="after-ack")
        self._lanes: dict[str, deque] = {}
        self._guard = threading.Condition()
        self._pending = 0
        self._closed = False

    @property
    def pending(self) -> int:
        """Pieces of work handed over and not yet done (queued or running)."""
        return self._pending

    def submit(self, key: str | None, work: Callable[[], object], delivery: str | None = None) -> bool:
        """Run `work` after the ack, after earlier work of the same `key`; once per `delivery` id. False once closed."""
        item = (work, delivery, time.monotonic())
        with self._guard:
            if self._closed:
                log.warning("shutting down: work for %s after the ack not taken", key)
                return False
            self._pending += 1
            if key is None:
                self._pool.submit(self._run, item, key)
                return True
            lane = self._lanes.get(key)
            if lane is not None:  # a worker is on this key already and will take it next
                lane.append(item)
                return True
            self._lanes[key] = deque([item])
        self._pool.submit(self._drain, key)
        return True

    def _drain(self, key: str) -> None:
        while True:
            with self._guard:
                lane = self._lanes[key]
                if not lane:
                    del self._lanes[key]
                    return
                item = lane.popleft()
            self._run(item, key)

    def _run(self, item: tuple, key: str | None) -> None:
        work, delivery, queued_at = item
        metrics.AFTER_ACK_WAIT.observe(time.monotonic() - queued_at)
        try:
            if delivery and self._claim is not None and not self._claim(delivery):
                log.info("duplicate delivery of %s ignored", delivery.removeprefix("event:"))
                return
            work()
        except Exception:  # one failed piece of work never stops the others
            log.exception("work after the ack failed (%s)", key or "no key")
        finally:
            with self._guard:
                self._pending -= 1
                self._guard.notify_all()

    def close(self, timeout: float) -> bool:
        """Take no more work; wait up to `timeout` s for what was handed over. True when all of it finished."""
        deadline = time.monotonic() + timeout
        with self._guard:
            self._closed = True
            while self._pending and time.monotonic() < deadline:
                self._guard.wait(deadline - time.monotonic())
            done = self._pending == 0
        if not done:
            log.warning("%d piece(s) of work after the ack unfinished at shutdown", self._pending)
        self._pool.shutdown(wait=False, cancel_futures=True)
        return done


class RetriedDeliveries(Middleware):
    """Notes that Slack spoke (Socket Mode readiness) and drops Slack's re-sends of an event it thinks we missed.

    A retry keeps the event_id, so the first delivery's record wins. Messages and mentions, the bulk of the
    traffic, record it after the ack (their work claims it in after_ack); other events here, the one write
    before their ack. A Middleware subclass, so Bolt calls it without building listener arguments for it.
    """

    def __init__(self, claim: Callable[[str], bool], runtime_ref: dict) -> None:
        self.claim, self.runtime_ref = claim, runtime_ref  # claim: the store's first_delivery

    def process(self, *, req, resp, next):  # noqa: A002 - Bolt's name
        if "runtime" in self.runtime_ref:
            self.runtime_ref["runtime"].last_slack_at = time.time()
        body = req.body if isinstance(req.body, dict) else {}
        event_id = body.get("event_id")
        event_type = (body.get("event") or {}).get("type") if event_id else None
        if event_id and event_type not in CLAIMED_AFTER_ACK and not self.claim(f"event:{event_id}"):
            log.info("duplicate delivery of %s ignored", event_id)
            return BoltResponse(status=200, body="")
        return next()
