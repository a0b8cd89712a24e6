"""Credential values held per launch thread, by fingerprint.

A person's saved credentials (the `secrets` table) are shared by all their
threads; a preflight checks the values one thread had at that moment. Each
save of an intake copies, in the same transaction, the person's value of every
credential whose fingerprint the thread records, so preflight, launch, polling
and cancel of that thread read exactly the value whose fingerprint it holds.
A value changed in another thread never reaches this one.
"""

from __future__ import annotations

import time

from taobot.secrets import REDACTOR


class HeldCredentialRows:
    """Per-thread credential copies; mixed into Store."""

    @staticmethod
    def _hold(db, intake_id: str, owner: str, wanted: dict[str, str], prune: bool = True) -> None:
        """Make the thread's held copies match `wanted` (name -> fingerprint); `prune` drops the others.

        Runs inside the caller's transaction (save_intake's, so the state and its copies change together).
        """
        held = dict(
            db.execute("SELECT name, fingerprint FROM held_credentials WHERE intake_id = ?", [intake_id]).fetchall()
        )
        for name in set(held) - set(wanted) if prune else ():
            db.execute("DELETE FROM held_credentials WHERE intake_id = ? AND name = ?", [intake_id, name])
        for name, fingerprint in wanted.items():
            if held.get(name) == fingerprint:
                continue
            row = db.execute(
                "SELECT ciphertext, secret FROM secrets WHERE owner = ? AND name = ? AND fingerprint = ?",
                [owner, name, fingerprint],
            ).fetchone()
            if row is None:
                # The saved value changed before this thread took it: hold nothing rather than another value.
                db.execute("DELETE FROM held_credentials WHERE intake_id = ? AND name = ?", [intake_id, name])
                continue
            db["held_credentials"].upsert(
                {
                    "intake_id": intake_id,
                    "name": name,
                    "ciphertext": row[0],
                    "fingerprint": fingerprint,
                    "secret": row[1],
                    "held_at": time.time(),
                },
                pk=("intake_id", "name"),
            )

    def thread_credentials(self, intake_id: str, owner: str, wanted: dict[str, str]) -> dict[str, str]:
        """name -> value for each wanted (name -> fingerprint) whose value with exactly that fingerprint is held.

        A thread saved before values were held (an upgrade) has no copies yet: the person's saved value counts
        when its fingerprint is the one wanted, and is held from then on. Secret values join the redactor.
        """
        if not wanted:
            return {}
        query = "SELECT name, ciphertext, fingerprint, secret FROM held_credentials WHERE intake_id = ?"
        with self._lock:
            held = {row[0]: row[1:] for row in self.db.execute(query, [intake_id]).fetchall()}
        unheld = {n: fp for n, fp in wanted.items() if n not in held}
        if unheld:
            with self.transaction() as db:
                if db["intakes"].count_where("id = ?", [intake_id]):
                    self._hold(db, intake_id, owner, unheld, prune=False)
                held = {row[0]: row[1:] for row in db.execute(query, [intake_id]).fetchall()}
        values = {}
        for name, fingerprint in wanted.items():
            ciphertext, held_fingerprint, secret = held.get(name, (None, None, 0))
            if ciphertext is None or held_fingerprint != fingerprint:
                continue
            value = self.box.decrypt(ciphertext)
            if secret:
                REDACTOR.add(value)
            values[name] = value
        return values

    def held_values(self, intake_id: str, names: list[str]) -> dict[str, str]:
        """The values a launched thread holds, by name (what polling and cancelling a job of that thread use)."""
        with self._lock:
            rows = self.db.execute(
                "SELECT name, ciphertext, secret FROM held_credentials WHERE intake_id = ?", [intake_id]
            ).fetchall()
        values = {}
        for name, ciphertext, secret in rows:
            if name in names:
                values[name] = self.box.decrypt(ciphertext)
                if secret:
                    REDACTOR.add(values[name])
        return values
