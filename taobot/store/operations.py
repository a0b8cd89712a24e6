"""Operations on the whole database: backups, key rotation, the scheduler lease, Slack retries."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from taobot.errors import StoreError
from taobot.secrets import SecretBox


class OperationRows:
    """Backups, re-encryption, the lease and seen deliveries; mixed into Store."""

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
        """Re-encrypt every stored secret (saved and held per thread) under a new key, in one transaction.

        Every value must decrypt with the current key first, so a wrong old key
        changes nothing. Fingerprints are kept: intakes and past preflights
        still match their credentials after a rotation.
        """
        tables = {
            "secrets": ("owner", "name"),
            "held_credentials": ("intake_id", "name"),
            "ssh_identities": ("owner", "cluster"),
        }
        plain = []
        with self._lock:
            for table, (first, second) in tables.items():
                rows = self.db.execute(f"SELECT {first}, {second}, ciphertext FROM {table}").fetchall()
                plain += [(table, a, b, self.box.decrypt(ciphertext)) for a, b, ciphertext in rows]
        with self.transaction() as db:
            for table, a, b, value in plain:
                first, second = tables[table]
                db.execute(
                    f"UPDATE {table} SET ciphertext = ? WHERE {first} = ? AND {second} = ?",
                    [new_box.encrypt(value), a, b],
                )
        self.box = new_box
        return sum(1 for item in plain if item[0] == "secrets")

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
            db.execute(
                "INSERT OR REPLACE INTO lease (name, holder, expires_at) VALUES (?, ?, ?)", [name, holder, now + ttl_s]
            )
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
