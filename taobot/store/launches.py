"""Launch rows and their status-update slots: typed `Launch` records in and out."""

from __future__ import annotations

import time

from taobot.errors import IntakeConflict
from taobot.intake import IntakeState
from taobot.launches import Launch, launch_row, terminal_sql_list, to_column


def like_prefix(prefix: str) -> str:
    """`prefix%` for `LIKE ... ESCAPE '\\'`, with the wildcards a person might type taken literally."""
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class LaunchRows:
    """Launches and update slots; mixed into Store, which provides the connection and transactions."""

    # ------------------------------------------------------------------ launches

    def add_launch(self, launch: Launch, intake: IntakeState, actor: str) -> None:
        """The launch row and the intake's new status, together."""
        with self.transaction() as db:
            db["launches"].insert(launch_row(launch), pk="id")
            expected = intake.version
            intake.version += 1
            cursor = db.execute(
                "UPDATE intakes SET status = ?, state = ?, updated_at = ?, version = ? WHERE id = ? AND version = ?",
                [intake.status, intake.model_dump_json(), intake.updated_at, intake.version, intake.id, expected],
            )
            if cursor.rowcount != 1:
                intake.version = expected
                raise IntakeConflict(
                    f"launch {intake.id} changed since it was read; nothing was recorded", intake=intake.id
                )
            self._log(
                db,
                intake.id,
                actor,
                "launched",
                {"launch": launch.id, "job": launch.job_id, "platform": launch.platform},
            )

    def intakes_with_running_preflight(self) -> list[str]:
        with self._lock:
            rows = self.db.execute(
                "SELECT id FROM intakes WHERE json_extract(state, '$.preflight.status') = 'running'"
            ).fetchall()
        return [r[0] for r in rows]

    def launch_counts_by_state(self) -> dict[str, int]:
        with self._lock:
            return dict(self.db.execute("SELECT state, COUNT(*) FROM launches GROUP BY state").fetchall())

    def _launches(self, where: str, params: list, **kwargs: object) -> list[Launch]:
        with self._lock:
            rows = list(self.db["launches"].rows_where(where, params, **kwargs))
        return [Launch.model_validate(r) for r in rows]

    def get_launch(self, launch_id: str) -> Launch | None:
        found = self._launches("id = ?", [launch_id])
        return found[0] if found else None

    def latest_launch(self, intake_id: str) -> Launch | None:
        found = self._launches("intake_id = ?", [intake_id], order_by="launched_at desc", limit=1)
        return found[0] if found else None

    def latest_launches(self, intake_ids: list[str]) -> dict[str, Launch]:
        """intake id -> its newest launch, for the intakes given that have one."""
        if not intake_ids:
            return {}
        marks = ", ".join("?" for _ in intake_ids)
        latest: dict[str, Launch] = {}
        rows = self.read(f"SELECT * FROM launches WHERE intake_id IN ({marks}) ORDER BY launched_at DESC", intake_ids)
        for row in rows:
            latest.setdefault(row["intake_id"], Launch.model_validate(dict(row)))
        return latest

    def launches_for_intake(self, intake_id: str) -> list[Launch]:
        return self._launches("intake_id = ?", [intake_id], order_by="launched_at desc")

    def launches_in_channel(self, channel: str, limit: int = 50) -> list[Launch]:
        return self._launches("channel = ?", [channel], order_by="launched_at desc", limit=limit)

    def launches_of_owner(self, owner: str, limit: int = 50) -> list[Launch]:
        return self._launches("owner = ?", [owner], order_by="launched_at desc", limit=limit)

    def find_launch_by_prefix(self, prefix: str, channel: str | None = None, owner: str | None = None) -> Launch | None:
        """The newest launch whose id starts with `prefix`, within one channel or of one owner when given."""
        where, params = ["id LIKE ? ESCAPE '\\'"], [like_prefix(prefix)]
        for column, value in (("channel", channel), ("owner", owner)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        found = self._launches(" AND ".join(where), params, order_by="launched_at desc", limit=1)
        return found[0] if found else None

    def active_launches(self) -> list[Launch]:
        """Launches whose job has not reached a terminal state, or whose final reply is not posted yet."""
        # Every end (a terminal state, an interrupted submit, a job the platform forgot) sets ended_at.
        ended = f"ended_at IS NOT NULL OR state IN ({terminal_sql_list()})"
        where = f"NOT ({ended}) OR (monitor = 1 AND final_posted = 0)"
        return self._launches(where, [], order_by="launched_at")

    def retries_of(self, launch_id: str) -> list[Launch]:
        """The launches started as retries of this one."""
        return self._launches("retry_of = ?", [launch_id], order_by="launched_at")

    def retry_chain(self, launch: Launch, limit: int = 50) -> list[Launch]:
        """The launch and those it retries, oldest first (followed through `retry_of`, at most `limit` steps)."""
        chain = [launch]
        while chain[0].retry_of and len(chain) < limit:
            earlier = self.get_launch(chain[0].retry_of)
            if earlier is None or any(c.id == earlier.id for c in chain):
                break
            chain.insert(0, earlier)
        return chain

    def launches_to_clean(self, now: float, attempts: int, limit: int) -> list[Launch]:
        """Ended launches whose platform cleanup is not done, is due now and has failed fewer than `attempts` times."""
        ended = f"(ended_at IS NOT NULL OR state IN ({terminal_sql_list()}))"
        due = "cleaned_at IS NULL AND cleanup_attempts < ? AND (cleanup_retry_at IS NULL OR cleanup_retry_at <= ?)"
        where = f"{ended} AND {due}"
        return self._launches(where, [attempts, now], order_by="ended_at", limit=limit)

    def launches_failing_to_post(self) -> list[Launch]:
        """Launches whose thread refuses status posts right now (for /readyz and the operator)."""
        return self._launches("post_failures > 0", [], order_by="launched_at")

    def update_launch(self, launch_id: str, **fields: object) -> None:
        with self.transaction() as db:
            db["launches"].update(launch_id, {k: to_column(v) for k, v in fields.items()})

    def claim_slot(self, launch_id: str, slot: int, state: object) -> bool:
        """Record that `slot` is about to be posted. False if it was already claimed."""
        with self.transaction() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO updates (launch_id, slot, status, state, at) VALUES (?, ?, 'pending', ?, ?)",
                [launch_id, slot, to_column(state), time.time()],
            )
            return cursor.rowcount == 1

    def claim_slots(self, wanted: list[tuple[str, int, object]]) -> set[tuple[str, int]]:
        """`claim_slot` for many (launch id, slot, state) in ONE transaction: the (launch id, slot) claimed now.

        A cycle with hundreds of updates due claims them together: one commit, not one per update."""
        claimed: set[tuple[str, int]] = set()
        if not wanted:
            return claimed
        at = time.time()
        with self.transaction() as db:
            for launch_id, slot, state in wanted:
                cursor = db.execute(
                    "INSERT OR IGNORE INTO updates (launch_id, slot, status, state, at) VALUES (?, ?, 'pending', ?, ?)",
                    [launch_id, slot, to_column(state), at],
                )
                if cursor.rowcount == 1:
                    claimed.add((launch_id, slot))
        return claimed

    def mark_posted(self, launch_id: str, slot: int, ts: str) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE updates SET status = 'posted', ts = ? WHERE launch_id = ? AND slot = ?", [ts, launch_id, slot]
            )

    def pending_slots(self) -> list[dict]:
        with self._lock:
            return list(self.db["updates"].rows_where("status = 'pending'"))

    def posted_slots(self, launch_id: str) -> list[dict]:
        with self._lock:
            return list(self.db["updates"].rows_where("launch_id = ?", [launch_id], order_by="slot"))

    def last_slots(self) -> dict[str, int]:
        """launch id -> highest interval slot claimed, for every launch, in one query."""
        with self._lock:
            rows = self.db.execute(
                "SELECT launch_id, MAX(slot) FROM updates WHERE slot >= 0 GROUP BY launch_id"
            ).fetchall()
        return {launch_id: slot for launch_id, slot in rows}

    def last_slot(self, launch_id: str) -> int | None:
        with self._lock:
            row = self.db.execute(
                "SELECT MAX(slot) FROM updates WHERE launch_id = ? AND slot >= 0", [launch_id]
            ).fetchone()
        return row[0] if row and row[0] is not None else None

    # ------------------------------------------------------------------ log growth of running jobs

    def output_watch(self) -> dict[str, tuple[str, float]]:
        """launch id -> (the log's mark, when it last changed) of every silent stretch recorded."""
        with self._lock:
            rows = self.db.execute("SELECT launch_id, mark, changed_at FROM output_watch").fetchall()
        return {launch_id: (mark, changed_at) for launch_id, mark, changed_at in rows}

    def keep_output_watch(self, launch_id: str, mark: str, changed_at: float) -> None:
        with self.transaction() as db:
            db["output_watch"].upsert({"launch_id": launch_id, "mark": mark, "changed_at": changed_at}, pk="launch_id")

    def drop_output_watch(self, launch_id: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM output_watch WHERE launch_id = ?", [launch_id])
