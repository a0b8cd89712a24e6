"""The audit trail: who did what, in which thread, when, and whether it was allowed (and why not)."""

from __future__ import annotations

import json
import time

from taobot.secrets import REDACTOR


class AuditRows:
    """Audit rows; mixed into Store, which provides the connection and transactions."""

    def audit(
        self,
        actor: str,
        action: str,
        *,
        channel: str | None = None,
        intake_id: str | None = None,
        allowed: bool = True,
        reason: str = "",
        detail: dict | None = None,
    ) -> None:
        """Record one action. The reason and details pass the redactor: an audit row never holds a secret."""
        with self.transaction() as db:
            db["audit"].insert(
                {
                    "at": time.time(),
                    "actor": actor,
                    "channel": channel,
                    "intake_id": intake_id,
                    "action": action,
                    "allowed": int(allowed),
                    "reason": REDACTOR.redact(reason),
                    "detail": REDACTOR.redact(json.dumps(detail or {}, sort_keys=True, default=str)),
                }
            )

    def audit_rows(self, since: float | None = None, actor: str | None = None, limit: int = 500) -> list[dict]:
        """The newest `limit` rows (oldest first), from `since` on, of one actor if given."""
        where, params = ["1 = 1"], []
        if since is not None:
            where.append("at >= ?")
            params.append(since)
        if actor:
            where.append("actor = ?")
            params.append(actor)
        sql = f"SELECT * FROM audit WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?"
        with self._lock:
            cursor = self.db.execute(sql, [*params, limit])
            columns = [c[0] for c in cursor.description]
            rows = [dict(zip(columns, r)) for r in cursor.fetchall()]
        return rows[::-1]
