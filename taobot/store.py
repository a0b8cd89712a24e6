"""SQLite persistence through sqlite-utils.

Tables: intakes (one row per launch thread, the conversation state as
JSON), events (who did what and when — never a secret value), secrets
(encrypted credential values per Slack user), seen_deliveries (Slack
retries already handled). Schema changes go through migrations.

One connection per Store, guarded by a lock: Bolt runs listeners on a
thread pool. WAL and a busy timeout let a second process (the CLI, a
standby instance) read while the bot writes.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlite_utils
from sqlite_utils.migrations import Migrations

from taobot.conversation import IntakeState
from taobot.errors import StoreError
from taobot.secrets import REDACTOR, SecretBox

migrations = Migrations("taobot")


@migrations()
def m001_initial(db: sqlite_utils.Database) -> None:
    db["intakes"].create(
        {
            "id": str,
            "channel": str,
            "thread_ts": str,
            "owner": str,
            "model": str,
            "action": str,
            "platform": str,
            "status": str,
            "state": str,
            "version": int,
            "created_at": float,
            "updated_at": float,
        },
        pk="id",
    )
    db["intakes"].create_index(["channel", "thread_ts"], unique=True)
    db["intakes"].create_index(["channel", "updated_at"])
    db["events"].create(
        {"id": int, "intake_id": str, "actor": str, "kind": str, "detail": str, "at": float}, pk="id"
    )
    db["events"].create_index(["intake_id", "id"])
    db["secrets"].create(
        {"owner": str, "name": str, "ciphertext": bytes, "fingerprint": str, "updated_at": float},
        pk=("owner", "name"),
    )
    db["seen_deliveries"].create({"key": str, "at": float}, pk="key")


@migrations()
def m002_launches(db: sqlite_utils.Database) -> None:
    db["launches"].create(
        {
            "id": str,  # launch id, shown as `/tao status <id>`
            "intake_id": str,
            "channel": str,
            "thread_ts": str,
            "owner": str,
            "platform": str,
            "model": str,
            "action": str,
            "job_id": str,
            "details": str,  # JSON: what poll/cancel need (remote dir, namespace, host …)
            "log_location": str,
            "results_location": str,
            "state": str,  # normalised JobState value
            "native": str,  # the platform's own state text
            "reason": str,
            "exit_code": int,
            "monitor": int,
            "detached": int,
            "interval_minutes": int,
            "launched_at": float,
            "state_since": float,
            "ended_at": float,
            "unreachable": str,  # why the last poll could not reach the platform, or null
            "unreachable_since": float,
            "next_poll_at": float,  # backoff while unreachable
            "final_posted": int,
        },
        pk="id",
    )
    db["launches"].create_index(["state"])
    db["launches"].create_index(["intake_id"])
    db["launches"].create_index(["channel", "launched_at"])
    # One row per (launch, interval slot), written BEFORE the post: a crash
    # between record and post is retried; a slot is never posted twice.
    db["updates"].create(
        {"launch_id": str, "slot": int, "status": str, "ts": str, "state": str, "at": float},
        pk=("launch_id", "slot"),
    )
    db["lease"].create({"name": str, "holder": str, "expires_at": float}, pk="name")


class Store:
    def __init__(self, path: Path | str, box: SecretBox) -> None:
        self.path = Path(path)
        self.box = box
        self._lock = threading.RLock()
        try:
            if str(path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(path), check_same_thread=False, timeout=30, isolation_level=None)
            self.db = sqlite_utils.Database(conn)
            self.db.execute("PRAGMA busy_timeout = 30000")
            if str(path) != ":memory:":
                self.db.enable_wal()
            self.db.execute("PRAGMA foreign_keys = ON")
            with self._lock:
                migrations.apply(self.db)
        except sqlite3.Error as exc:
            raise StoreError(f"TAOBOT_DB: cannot open database {path}: {exc}", path=str(path)) from exc

    @contextmanager
    def transaction(self) -> Iterator[sqlite_utils.Database]:
        """A write transaction. BEGIN IMMEDIATE takes the write lock up front, so
        a read-then-write never fails with "database is locked" when another
        process wrote in between; the busy timeout makes it wait instead."""
        with self._lock:
            conn = self.db.conn
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreError(f"database write failed: {exc}") from exc
            try:
                yield self.db
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise StoreError(f"database write failed: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self.db.close()

    # ------------------------------------------------------------------ intakes

    def save_intake(self, state: IntakeState, actor: str, kind: str, detail: dict | None = None) -> None:
        """Write the state and its event record together, in one transaction."""
        row = {
            "id": state.id,
            "channel": state.channel,
            "thread_ts": state.thread_ts,
            "owner": state.owner,
            "model": state.model,
            "action": state.action,
            "platform": state.platform,
            "status": state.status,
            "state": state.model_dump_json(),
            "created_at": state.created_at,
            "updated_at": state.updated_at,
        }
        with self.transaction() as db:
            existing = db.execute("SELECT version FROM intakes WHERE id = ?", [state.id]).fetchone()
            row["version"] = (existing[0] + 1) if existing else 1
            db["intakes"].upsert(row, pk="id")
            self._log(db, state.id, actor, kind, detail)

    def log_event(self, intake_id: str, actor: str, kind: str, detail: dict | None = None) -> None:
        with self.transaction() as db:
            self._log(db, intake_id, actor, kind, detail)

    @staticmethod
    def _log(db: sqlite_utils.Database, intake_id: str, actor: str, kind: str, detail: dict | None) -> None:
        text = REDACTOR.redact(json.dumps(detail or {}, sort_keys=True, default=str))
        db["events"].insert({"intake_id": intake_id, "actor": actor, "kind": kind, "detail": text, "at": time.time()})

    def get_intake(self, intake_id: str) -> IntakeState | None:
        with self._lock:
            row = self.db.execute("SELECT state FROM intakes WHERE id = ?", [intake_id]).fetchone()
        return IntakeState.model_validate_json(row[0]) if row else None

    def find_intake(self, channel: str, thread_ts: str) -> IntakeState | None:
        with self._lock:
            row = self.db.execute(
                "SELECT state FROM intakes WHERE channel = ? AND thread_ts = ?", [channel, thread_ts]
            ).fetchone()
        return IntakeState.model_validate_json(row[0]) if row else None

    def find_intake_by_prefix(self, prefix: str) -> list[IntakeState]:
        with self._lock:
            rows = self.db.execute(
                "SELECT state FROM intakes WHERE id LIKE ? ORDER BY updated_at DESC LIMIT 5", [prefix + "%"]
            ).fetchall()
        return [IntakeState.model_validate_json(r[0]) for r in rows]

    def intakes_in_channel(self, channel: str, limit: int = 20) -> list[IntakeState]:
        with self._lock:
            rows = self.db.execute(
                "SELECT state FROM intakes WHERE channel = ? ORDER BY updated_at DESC LIMIT ?", [channel, limit]
            ).fetchall()
        return [IntakeState.model_validate_json(r[0]) for r in rows]

    def events_for(self, intake_id: str) -> list[dict]:
        with self._lock:
            return list(self.db["events"].rows_where("intake_id = ?", [intake_id], order_by="id"))

    # ------------------------------------------------------------------ secrets

    def put_secret(self, owner: str, name: str, value: str) -> str:
        """Encrypt and store a credential value; returns its fingerprint."""
        fingerprint = self.box.fingerprint(value)
        REDACTOR.add(value)
        with self.transaction() as db:
            db["secrets"].upsert(
                {
                    "owner": owner,
                    "name": name,
                    "ciphertext": self.box.encrypt(value),
                    "fingerprint": fingerprint,
                    "updated_at": time.time(),
                },
                pk=("owner", "name"),
            )
        return fingerprint

    def get_secret(self, owner: str, name: str) -> str | None:
        with self._lock:
            row = self.db.execute(
                "SELECT ciphertext FROM secrets WHERE owner = ? AND name = ?", [owner, name]
            ).fetchone()
        if row is None:
            return None
        value = self.box.decrypt(row[0])
        REDACTOR.add(value)
        return value

    def secret_fingerprints(self, owner: str) -> dict[str, str]:
        """Which credentials this person has saved (name -> fingerprint), without decrypting."""
        with self._lock:
            rows = self.db.execute("SELECT name, fingerprint FROM secrets WHERE owner = ?", [owner]).fetchall()
        return {name: fp for name, fp in rows}

    def delete_secrets(self, owner: str, names: list[str]) -> None:
        with self.transaction() as db:
            for name in names:
                db.execute("DELETE FROM secrets WHERE owner = ? AND name = ?", [owner, name])

    def load_redactions(self) -> None:
        """Teach the redactor every stored value, so logs never show one after a restart."""
        with self._lock:
            rows = self.db.execute("SELECT ciphertext FROM secrets").fetchall()
        for (ciphertext,) in rows:
            REDACTOR.add(self.box.decrypt(ciphertext))

    # ------------------------------------------------------------------ launches

    def add_launch(self, row: dict, intake: IntakeState, actor: str) -> None:
        """The launch row and the intake's new status, together."""
        with self.transaction() as db:
            db["launches"].insert(row, pk="id")
            db["intakes"].update(intake.id, {"status": intake.status, "state": intake.model_dump_json(), "updated_at": intake.updated_at})
            self._log(db, intake.id, actor, "launched", {"launch": row["id"], "job": row["job_id"], "platform": row["platform"]})

    def intakes_with_running_preflight(self) -> list[str]:
        with self._lock:
            rows = self.db.execute(
                "SELECT id FROM intakes WHERE json_extract(state, '$.preflight.status') = 'running'").fetchall()
        return [r[0] for r in rows]

    def launch_counts_by_state(self) -> dict[str, int]:
        with self._lock:
            return dict(self.db.execute("SELECT state, COUNT(*) FROM launches GROUP BY state").fetchall())

    def get_launch(self, launch_id: str) -> dict | None:
        with self._lock:
            rows = list(self.db["launches"].rows_where("id = ?", [launch_id]))
        return rows[0] if rows else None

    def launches_for_intake(self, intake_id: str) -> list[dict]:
        with self._lock:
            return list(self.db["launches"].rows_where("intake_id = ?", [intake_id], order_by="launched_at desc"))

    def launches_in_channel(self, channel: str, limit: int = 50) -> list[dict]:
        with self._lock:
            return list(self.db["launches"].rows_where("channel = ?", [channel], order_by="launched_at desc", limit=limit))

    def find_launch_by_prefix(self, prefix: str) -> dict | None:
        with self._lock:
            rows = list(self.db["launches"].rows_where("id LIKE ?", [prefix + "%"], order_by="launched_at desc", limit=1))
        return rows[0] if rows else None

    def active_launches(self) -> list[dict]:
        """Launches whose job has not reached a terminal state, or whose final reply is not posted yet."""
        with self._lock:
            return list(self.db["launches"].rows_where(
                "state NOT IN ('Succeeded', 'Failed', 'Cancelled') OR (monitor = 1 AND final_posted = 0)", order_by="launched_at"))

    def update_launch(self, launch_id: str, **fields: object) -> None:
        with self.transaction() as db:
            db["launches"].update(launch_id, fields)

    def claim_slot(self, launch_id: str, slot: int, state: str) -> bool:
        """Record that `slot` is about to be posted. False if it was already claimed."""
        with self.transaction() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO updates (launch_id, slot, status, state, at) VALUES (?, ?, 'pending', ?, ?)",
                [launch_id, slot, state, time.time()],
            )
            return cursor.rowcount == 1

    def mark_posted(self, launch_id: str, slot: int, ts: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE updates SET status = 'posted', ts = ? WHERE launch_id = ? AND slot = ?", [ts, launch_id, slot])

    def pending_slots(self) -> list[dict]:
        with self._lock:
            return list(self.db["updates"].rows_where("status = 'pending'"))

    def posted_slots(self, launch_id: str) -> list[dict]:
        with self._lock:
            return list(self.db["updates"].rows_where("launch_id = ?", [launch_id], order_by="slot"))

    def last_slots(self) -> dict[str, int]:
        """launch id -> highest interval slot claimed, for every launch, in one query."""
        with self._lock:
            rows = self.db.execute("SELECT launch_id, MAX(slot) FROM updates WHERE slot >= 0 GROUP BY launch_id").fetchall()
        return {launch_id: slot for launch_id, slot in rows}

    def last_slot(self, launch_id: str) -> int | None:
        with self._lock:
            row = self.db.execute("SELECT MAX(slot) FROM updates WHERE launch_id = ? AND slot >= 0", [launch_id]).fetchone()
        return row[0] if row and row[0] is not None else None

    # ------------------------------------------------------------------ operations

    def backup(self, dest: Path | str) -> None:
        """An online, consistent copy of the database (SQLite's backup API); the bot may keep running."""
        dest = Path(dest)
        if dest.exists():
            raise StoreError(f"{dest} already exists; choose a new backup path", path=str(dest))
        dest.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            target = sqlite3.connect(str(dest))
            try:
                self.db.conn.backup(target)
            finally:
                target.close()
        dest.chmod(0o600)

    def reencrypt(self, new_box: SecretBox) -> int:
        """Re-encrypt every stored secret under a new key, in one transaction.

        Every value must decrypt with the current key first, so a wrong old key
        changes nothing. Fingerprints are kept: intakes and past preflights
        still match their credentials after a rotation.
        """
        with self._lock:
            rows = self.db.execute("SELECT owner, name, ciphertext FROM secrets").fetchall()
        plain = [(owner, name, self.box.decrypt(ciphertext)) for owner, name, ciphertext in rows]
        with self.transaction() as db:
            for owner, name, value in plain:
                db.execute("UPDATE secrets SET ciphertext = ? WHERE owner = ? AND name = ?",
                           [new_box.encrypt(value), owner, name])
        self.box = new_box
        return len(plain)

    def lease_holder(self, name: str) -> tuple[str, float] | None:
        with self._lock:
            row = self.db.execute("SELECT holder, expires_at FROM lease WHERE name = ?", [name]).fetchone()
        return (row[0], row[1]) if row and row[1] > time.time() else None

    # ------------------------------------------------------------------ single scheduler lease

    def acquire_lease(self, name: str, holder: str, ttl_s: float) -> bool:
        """Take or renew the named lease; False while another holder's lease is unexpired."""
        now = time.time()
        with self.transaction() as db:
            row = db.execute("SELECT holder, expires_at FROM lease WHERE name = ?", [name]).fetchone()
            if row and row[0] != holder and row[1] > now:
                return False
            db.execute("INSERT OR REPLACE INTO lease (name, holder, expires_at) VALUES (?, ?, ?)", [name, holder, now + ttl_s])
            return True

    def release_lease(self, name: str, holder: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM lease WHERE name = ? AND holder = ?", [name, holder])

    # ------------------------------------------------------------------ Slack retries

    def first_delivery(self, key: str) -> bool:
        """True the first time a delivery key is seen; False for Slack's retries."""
        with self.transaction() as db:
            cursor = db.execute("INSERT OR IGNORE INTO seen_deliveries (key, at) VALUES (?, ?)", [key, time.time()])
            return cursor.rowcount == 1

    def prune_deliveries(self, older_than_s: float = 86400) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM seen_deliveries WHERE at < ?", [time.time() - older_than_s])
