"""Status posts into launch threads: exactly once per (launch, slot), and every thread on its own.

The slot is claimed in the database BEFORE posting, and the post carries
Slack message metadata naming launch and slot. A slot left "pending" (a
crash, or a post Slack refused) is retried later, after checking the
thread for a message with that metadata, so it is neither lost nor doubled.

A thread whose posts fail (the bot was removed from the channel, the
channel was archived, Slack is failing) backs off on its own: its launch
records the error, the number of failures in a row and when to try again.
No other thread waits for it, and a failure never stops a cycle. When the
channel itself is gone, the launch moves to a thread in its owner's DM
with the bot, says why, and its updates go on there.

With a `PostQueue` (the running bot's), `post` claims the slot and hands
the post to the queue: the cycle goes on to its next poll while the posts
wait their turn at Slack's limits in the background, in order per channel.
A slot queued when the process stops is still "pending", so it is found or
posted after a restart like any other: exactly once either way.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from taobot import metrics
from taobot.errors import TaobotError
from taobot.launches import Launch
from taobot.views import Reply

log = logging.getLogger(__name__)

FINAL_SLOT = -1
DM_COPY_SLOT = -2  # the final reply's copy in the owner's DM (`notify=dm`); not in a thread
POST_BACKOFF_S = 5  # after the first failure; doubles with each one in a row
MAX_POST_BACKOFF_S = 600
# Slack's answers that mean the thread's channel (or the thread) cannot be posted to again.
CHANNEL_GONE = frozenset(
    {"channel_not_found", "is_archived", "channel_is_archived", "not_in_channel", "thread_not_found"}
)


def post_backoff(failures: int) -> float:
    """Seconds to wait after `failures` failed posts in a row: 5, 10, 20 … capped at 10 min."""
    return min(MAX_POST_BACKOFF_S, POST_BACKOFF_S * 2 ** max(0, min(failures - 1, 10)))


CARDS_LANE = "\x00cards"  # card refreshes share one lane: their workspace-wide budget never holds up posts
QUEUE_WORKERS = 16


class PostQueue:
    """Posts sent in the background: in order per lane (a channel), lanes side by side.

    Up to `workers` threads serve the lanes round robin, one piece of work at a time, so a channel waiting
    out its pacing never holds another channel's posts, and one lane is never served by two threads at once
    (its posts keep their order). Exactly-once needs nothing from here: see the module's docstring.
    """

    def __init__(self, workers: int = QUEUE_WORKERS) -> None:
        self.workers = workers
        self._cond = threading.Condition()
        self._lanes: dict[str, deque] = {}
        self._ready: deque[str] = deque()  # lanes with work and no thread on them
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._pending = 0
        self._closed = False

    @property
    def pending(self) -> int:
        """Pieces of work handed over and not done yet (queued or running)."""
        return self._pending

    def submit(self, lane: str, work: Callable[[], object]) -> bool:
        """Run `work` after the earlier work of `lane`. False once closed (nothing is run then)."""
        with self._cond:
            if self._closed:
                return False
            self._pending += 1
            queued = self._lanes.get(lane)
            if queued is None:
                self._lanes[lane] = deque([work])
                self._ready.append(lane)
            else:
                queued.append(work)  # its lane is ready or running: taken in turn
            if self._idle == 0 and len(self._threads) < self.workers:
                thread = threading.Thread(target=self._serve, name=f"post-queue-{len(self._threads)}", daemon=True)
                self._threads.append(thread)
                thread.start()
            self._cond.notify()
        return True

    def _serve(self) -> None:
        while True:
            with self._cond:
                while not self._ready and not self._closed:
                    self._idle += 1
                    self._cond.wait()
                    self._idle -= 1
                if not self._ready:
                    return
                lane = self._ready.popleft()
                work = self._lanes[lane].popleft()
            try:
                work()
            except Exception:  # noqa: BLE001 - one failed post never stops the others
                log.exception("queued post failed")
            with self._cond:
                self._pending -= 1
                if lane in self._lanes and self._lanes[lane]:
                    self._ready.append(lane)  # to the back: the other lanes' turn first
                else:
                    self._lanes.pop(lane, None)
                self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until everything handed over is done (at most `timeout` s); True when it is."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending and time.monotonic() < deadline:
                self._cond.wait(deadline - time.monotonic())
            return self._pending == 0

    def close(self, timeout: float) -> bool:
        """Take no more work; give what was handed over `timeout` s, then drop the rest (still pending in the
        database, so it is posted after the restart). True when nothing was dropped."""
        done = self.wait_idle(timeout)
        with self._cond:
            self._closed = True
            dropped = sum(len(q) for q in self._lanes.values())
            for queued in self._lanes.values():
                queued.clear()
            self._ready.clear()
            self._pending -= dropped
            self._cond.notify_all()
        if dropped:
            log.warning("%d queued post(s) left for after the restart", dropped)
        return done and not dropped


class ThreadPoster:
    def __init__(self, store, messenger, clock, queue: PostQueue | None = None) -> None:
        self.store = store
        self.messenger = messenger
        self.clock = clock
        self.queue = queue  # None: each post is sent before `post` returns
        self._in_flight: set[tuple[str, int]] = set()  # (launch, slot) claimed and queued, not sent yet
        self._flight_lock = threading.Lock()

    def backing_off(self, launch: Launch) -> bool:
        return (launch.post_retry_at or 0) > self.clock()

    def claim_many(self, wanted: list[tuple[Launch, int]]) -> set[tuple[str, int]]:
        """Claim these slots in one transaction; the (launch id, slot) claimed now. A thread backing off claims
        nothing (as with `post`)."""
        return self.store.claim_slots([(x.id, slot, x.state) for x, slot in wanted if not self.backing_off(x)])

    def post(self, launch: Launch, slot: int, view, *, claimed: bool = False, then=None) -> bool:
        """Claim the slot (`claimed`: `claim_many` did), then post it, or queue it. False when it was claimed
        before, or the post failed (it is retried later). `then()` runs once the post went out."""
        if not claimed:
            if self.backing_off(launch):
                return False
            if not self.store.claim_slot(launch.id, slot, launch.state):
                return False  # this slot was already claimed: never post it twice
        if self.queue is None:
            sent = self._send(launch, slot, view)
            if sent and then is not None:
                then()
            return sent

        def send(current: Launch) -> None:
            if self._send(current, slot, view) and then is not None:
                self.queue.submit(CARDS_LANE, then)

        return self._hand_over(launch, slot, send)

    def _hand_over(self, launch: Launch, slot: int, work: Callable[[Launch], object]) -> bool:
        """Queue `work(launch as it is then)` in the launch's channel lane; the slot stays pending until sent."""
        key = (launch.id, slot)
        with self._flight_lock:
            self._in_flight.add(key)

        def run() -> None:
            try:
                # As it is now: an earlier post may have moved it to the DM, or made its thread back off.
                current = self.store.get_launch(launch.id) or launch
                if not self.backing_off(current):  # else left pending: retried once its backoff is over
                    work(current)
            finally:
                with self._flight_lock:
                    self._in_flight.discard(key)

        if self.queue.submit(launch.channel, run):
            return True
        with self._flight_lock:
            self._in_flight.discard(key)
        return False

    def retry_pending(self, view_for) -> int:
        """Slots claimed but not confirmed posted: find them in the thread or post them now. Returns how many went
        out (with a queue: how many were queued).

        `view_for(launch, slot)` builds the view to post. Each slot is tried on its own: one that fails backs
        its thread off and the others go on. A slot in the queue is not pending in this sense: it is skipped.
        """
        sent = 0
        for pending in self.store.pending_slots():
            with self._flight_lock:
                if (pending["launch_id"], pending["slot"]) in self._in_flight:
                    continue
            launch = self.store.get_launch(pending["launch_id"])
            if launch is None or self.backing_off(launch):
                continue
            if self.queue is None:
                sent += self._retry_one(launch, pending, view_for)
            elif self._hand_over(launch, pending["slot"], lambda now, p=pending: self._retry_one(now, p, view_for)):
                sent += 1
        return sent

    def _retry_one(self, launch: Launch, pending: dict, view_for) -> int:
        slot = pending["slot"]
        try:
            if slot == DM_COPY_SLOT:  # not in a thread: looked for among the DM's messages since the claim
                dm = self.messenger.open_dm(launch.owner)
                ts = self.messenger.find_posted(dm, None, launch.id, slot, since=pending["at"] - 60)
                if not ts:
                    return int(self._send(launch, slot, view_for(launch, FINAL_SLOT)))
                self._confirmed(launch, slot, ts)
                return 0
            ts = self.messenger.find_posted(launch.channel, launch.thread_ts, launch.id, slot)
        except TaobotError as exc:
            moved = self._failed(launch, exc)
            if moved is None:
                return 0
            launch, ts = moved, None  # a fresh DM thread cannot hold the slot yet
        if ts:
            self._confirmed(launch, slot, ts)
            return 0
        return int(self._send(launch, slot, view_for(launch, slot)))

    def _send(self, launch: Launch, slot: int, view) -> bool:
        metadata = {"event_type": "taobot_status", "event_payload": {"launch": launch.id, "slot": slot}}
        try:
            if slot == DM_COPY_SLOT:
                ts = self.messenger.post(self.messenger.open_dm(launch.owner), view, metadata=metadata)
            else:
                ts = self.messenger.post(launch.channel, view, thread_ts=launch.thread_ts, metadata=metadata)
        except TaobotError as exc:
            moved = self._failed(launch, exc, may_move=slot != DM_COPY_SLOT)
            return self._send(moved, slot, view) if moved is not None else False
        self._confirmed(launch, slot, ts)
        return True

    def _confirmed(self, launch: Launch, slot: int, ts: str) -> None:
        self.store.mark_posted(launch.id, slot, ts)
        changes: dict = {}
        if slot == FINAL_SLOT:
            changes["final_posted"] = True
        if launch.post_failures or launch.post_error:
            changes.update(post_error=None, post_failures=0, post_retry_at=None)
            log.info("posts to the thread work again", extra={"launch": launch.id, "channel": launch.channel})
        if changes:
            self.store.update_launch(launch.id, **changes)

    def _failed(self, launch: Launch, exc: TaobotError, may_move: bool = True) -> Launch | None:
        """Record the failure and back off; or, when the channel is gone, the launch moved to its owner's DM."""
        error = str(exc.context.get("error") or type(exc).__name__)
        if may_move and error in CHANNEL_GONE and not launch.moved_from:
            moved = self._move_to_dm(launch, error)
            if moved is not None:
                return moved
        failures = (self.store.get_launch(launch.id) or launch).post_failures + 1
        self.store.update_launch(
            launch.id,
            post_error=error[:200],
            post_failures=failures,
            post_retry_at=self.clock() + post_backoff(failures),
        )
        metrics.THREAD_POST_FAILURES.labels(error=error[:60]).inc()
        log.warning(
            "status post failed (%s, %d in a row); this thread retries with backoff, the others go on",
            error,
            failures,
            extra={"launch": launch.id, "channel": launch.channel},
        )
        return None

    def _move_to_dm(self, launch: Launch, error: str) -> Launch | None:
        """Open a thread in the owner's DM with the bot, say why, and make it the launch's thread."""
        text = (
            f"The thread of launch `{launch.id}` ({launch.model} {launch.action} on {launch.platform}) in <#{launch.channel}> "
            f"can no longer be posted to (`{error}`). The job is still watched: its status updates continue here."
        )
        try:
            dm = self.messenger.open_dm(launch.owner)
            ts = self.messenger.post(dm, Reply(text))
        except TaobotError as exc:
            log.warning("could not move launch updates to the owner's DM: %s", exc, extra={"launch": launch.id})
            return None
        self.store.update_launch(launch.id, channel=dm, thread_ts=ts, moved_from=launch.channel)
        log.info("launch updates moved to the owner's DM (%s)", error, extra={"launch": launch.id, "channel": dm})
        return launch.with_changes(channel=dm, thread_ts=ts, moved_from=launch.channel)
