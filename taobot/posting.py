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
"""

from __future__ import annotations

import logging

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


class ThreadPoster:
    def __init__(self, store, messenger, clock) -> None:
        self.store = store
        self.messenger = messenger
        self.clock = clock

    def backing_off(self, launch: Launch) -> bool:
        return (launch.post_retry_at or 0) > self.clock()

    def post(self, launch: Launch, slot: int, view) -> bool:
        """Claim the slot, then post it. False when it was claimed before, or the post failed (it is retried later)."""
        if self.backing_off(launch):
            return False
        if not self.store.claim_slot(launch.id, slot, launch.state):
            return False  # this slot was already claimed: never post it twice
        return self._send(launch, slot, view)

    def retry_pending(self, view_for) -> int:
        """Slots claimed but not confirmed posted: find them in the thread or post them now. Returns how many went out.

        `view_for(launch, slot)` builds the view to post. Each slot is tried on its own: one that fails backs
        its thread off and the others go on.
        """
        sent = 0
        for pending in self.store.pending_slots():
            launch = self.store.get_launch(pending["launch_id"])
            if launch is None or self.backing_off(launch):
                continue
            slot = pending["slot"]
            try:
                if slot == DM_COPY_SLOT:  # not in a thread: looked for among the DM's messages since the claim
                    dm = self.messenger.open_dm(launch.owner)
                    ts = self.messenger.find_posted(dm, None, launch.id, slot, since=pending["at"] - 60)
                    if not ts:
                        sent += self._send(launch, slot, view_for(launch, FINAL_SLOT))
                    else:
                        self._confirmed(launch, slot, ts)
                    continue
                ts = self.messenger.find_posted(launch.channel, launch.thread_ts, launch.id, slot)
            except TaobotError as exc:
                moved = self._failed(launch, exc)
                if moved is None:
                    continue
                launch, ts = moved, None  # a fresh DM thread cannot hold the slot yet
            if ts:
                self._confirmed(launch, slot, ts)
                continue
            sent += self._send(launch, slot, view_for(launch, slot))
        return sent

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
