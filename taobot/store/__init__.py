"""SQLite persistence through sqlite-utils.

Tables: intakes (one row per launch thread, the conversation state as
JSON), events (who did what and when — never a secret value), secrets
(encrypted credential values per Slack user), held_credentials (the values
one thread uses, by fingerprint), audit (every action, allowed or refused),
seen_deliveries (Slack retries already handled), launches and updates.
Schema changes go through migrations.

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

from taobot.errors import IntakeConflict, StoreError
from taobot.intake import IntakeState
from taobot.secrets import REDACTOR, SecretBox
from taobot.store.audit import AuditRows
from taobot.store.held_credentials import HeldCredentialRows
from taobot.store.identities import SshIdentityRows
from taobot.store.launches import LaunchRows, like_prefix
from taobot.store.operations import OperationRows
from taobot.store.schema import migrations
from taobot.store.workflows import WorkflowRows

__all__ = ["Store", "like_prefix"]


def _intake(row) -> IntakeState:
    """A stored intake, carrying the row version it was read at (the column is the truth, not the JSON)."""
    state = IntakeState.model_validate_json(row[0])
    state.version = row[1]
    return state


class Store(LaunchRows, OperationRows, AuditRows, HeldCredentialRows, SshIdentityRows, WorkflowRows):
    def __init__(self, path: Path | str, box: SecretBox) -> None:
        self.path = Path(path)
        self.box = box
        self._lock = threading.RLock()
        self._readers = threading.local()  # per thread: a read-only connection (see `read`)
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

    def read(self, sql: str, params: list) -> list[sqlite3.Row]:
        """A read that never waits behind this process's writes: WAL lets a second connection read the last
        committed state while the write connection is in a transaction. For what answers in an ack (`/tao
        status`); each thread has its own read-only connection. An in-memory database has only the one."""
        if str(self.path) == ":memory:":
            with self._lock:
                cursor = self.db.conn.execute(sql, params)
                names = [c[0] for c in cursor.description]
                return [dict(zip(names, row)) for row in cursor.fetchall()]
        conn = getattr(self._readers, "conn", None)
        if conn is None:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30, isolation_level=None)
            conn.row_factory = sqlite3.Row
            self._readers.conn = conn
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"database read failed: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self.db.close()

    # ------------------------------------------------------------------ intakes

    def save_intake(self, state: IntakeState, actor: str, kind: str, detail: dict | None = None) -> None:
        """Write the state and its event record together, in one transaction; IntakeConflict if it changed since read."""
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
            current = existing[0] if existing else 0
            if current != state.version:
                raise IntakeConflict(
                    f"launch {state.id} changed since it was read (version {state.version}, now {current})",
                    intake=state.id,
                )
            state.version = row["version"] = current + 1
            row["state"] = state.model_dump_json()
            db["intakes"].upsert(row, pk="id")
            self._hold(db, state.id, state.owner, state.credentials)
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
            row = self.db.execute("SELECT state, version FROM intakes WHERE id = ?", [intake_id]).fetchone()
        return _intake(row) if row else None

    def find_intake(self, channel: str, thread_ts: str) -> IntakeState | None:
        with self._lock:
            row = self.db.execute(
                "SELECT state, version FROM intakes WHERE channel = ? AND thread_ts = ?", [channel, thread_ts]
            ).fetchone()
        return _intake(row) if row else None

    def find_intake_by_prefix(
        self, prefix: str, channel: str | None = None, owner: str | None = None
    ) -> list[IntakeState]:
        """Intakes whose id starts with `prefix` (newest first), within one channel or of one owner when given."""
        where, params = ["id LIKE ? ESCAPE '\\'"], [like_prefix(prefix)]
        for column, value in (("channel", channel), ("owner", owner)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        sql = f"SELECT state, version FROM intakes WHERE {' AND '.join(where)} ORDER BY updated_at DESC LIMIT 5"
        with self._lock:
            rows = self.db.execute(sql, params).fetchall()
        return [_intake(r) for r in rows]

    def intakes_in_channel(self, channel: str, limit: int = 20) -> list[IntakeState]:
        return self._intakes_where("channel = ?", channel, limit)

    def intakes_of_owner(self, owner: str, limit: int = 20) -> list[IntakeState]:
        return self._intakes_where("owner = ?", owner, limit)

    def count_intakes(self, channel: str | None = None, owner: str | None = None) -> int:
        """How many intakes a channel (or an owner) has, without reading them."""
        where, value = ("channel = ?", channel) if channel is not None else ("owner = ?", owner)
        return self.read(f"SELECT COUNT(*) AS n FROM intakes WHERE {where}", [value])[0]["n"]

    def _intakes_where(self, where: str, value: str, limit: int) -> list[IntakeState]:
        rows = self.read(
            f"SELECT state, version FROM intakes WHERE {where} ORDER BY updated_at DESC LIMIT ?", [value, limit]
        )
        return [_intake((r["state"], r["version"])) for r in rows]

    def recent_intakes(self, limit: int = 40) -> list[IntakeState]:
        """The most recently active intakes of every channel (for the operator's `taobot status`)."""
        with self._lock:
            rows = self.db.execute(
                "SELECT state, version FROM intakes ORDER BY updated_at DESC LIMIT ?", [limit]
            ).fetchall()
        return [_intake(r) for r in rows]

    def events_for(self, intake_id: str) -> list[dict]:
        with self._lock:
            return list(self.db["events"].rows_where("intake_id = ?", [intake_id], order_by="id"))

    # ------------------------------------------------------------------ secrets

    def put_secret(self, owner: str, name: str, value: str, secret: bool = True) -> str:
        """Encrypt and store a credential value; returns its fingerprint. Only a `secret` value is redacted."""
        fingerprint = self.box.fingerprint(value)
        if secret:
            REDACTOR.add(value)
        with self.transaction() as db:
            db["secrets"].upsert(
                {
                    "owner": owner,
                    "name": name,
                    "ciphertext": self.box.encrypt(value),
                    "fingerprint": fingerprint,
                    "updated_at": time.time(),
                    "secret": int(secret),
                },
                pk=("owner", "name"),
            )
        return fingerprint

    def get_secret(self, owner: str, name: str) -> str | None:
        with self._lock:
            row = self.db.execute(
                "SELECT ciphertext, secret FROM secrets WHERE owner = ? AND name = ?", [owner, name]
            ).fetchone()
        if row is None:
            return None
        value = self.box.decrypt(row[0])
        if row[1]:
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
            rows = self.db.execute(
                "SELECT ciphertext FROM secrets WHERE secret = 1 "
                "UNION ALL SELECT ciphertext FROM held_credentials WHERE secret = 1"
            ).fetchall()
        for (ciphertext,) in rows:
            REDACTOR.add(self.box.decrypt(ciphertext))
