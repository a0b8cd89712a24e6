"""SSH identities taobot made for people, and login-node host keys trusted on first use.

`ssh_identities` holds one ed25519 key pair per person (and per cluster when
the operator asks for that): the private half encrypted with the store's
SecretBox like a secret, the public half and its SHA256 fingerprint in the
clear. Pressing *Use a taobot key* again reuses the pair. The private half is
decrypted only to become the person's `TAOBOT_SSH_KEY` credential, and joins
the redactor whenever it is read.

`trusted_host_keys` records a host key a person trusted on first use
(TAOBOT_SSH_TOFU): which host, which key, who and when.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from taobot.secrets import REDACTOR


@dataclass(frozen=True)
class SshIdentity:
    owner: str
    cluster: str  # "" when one key serves every cluster
    public_key: str
    fingerprint: str
    private_key: str = field(repr=False)
    created_at: float = 0.0


@dataclass(frozen=True)
class TrustedHostKey:
    host: str
    key_type: str
    key_base64: str
    fingerprint: str
    trusted_by: str
    trusted_at: float


class SshIdentityRows:
    """Per-person key pairs and trusted host keys; mixed into Store."""

    def ssh_identity(self, owner: str, cluster: str = "") -> SshIdentity | None:
        with self._lock:
            row = self.db.execute(
                "SELECT public_key, fingerprint, ciphertext, created_at FROM ssh_identities "
                "WHERE owner = ? AND cluster = ?",
                [owner, cluster],
            ).fetchone()
        return self._identity(owner, cluster, row) if row else None

    def _identity(self, owner: str, cluster: str, row) -> SshIdentity:
        private = self.box.decrypt(row[2])
        REDACTOR.add(private)
        return SshIdentity(owner, cluster, row[0], row[1], private, row[3])

    def ssh_identity_for(self, owner: str, cluster: str, make: Callable[[], object]) -> tuple[SshIdentity, bool]:
        """This person's key pair for `cluster`, made with `make()` (a KeyPair) the first time; (identity, made)."""
        with self.transaction() as db:
            row = db.execute(
                "SELECT public_key, fingerprint, ciphertext, created_at FROM ssh_identities "
                "WHERE owner = ? AND cluster = ?",
                [owner, cluster],
            ).fetchone()
            if row is not None:
                return self._identity(owner, cluster, row), False
            pair = make()
            now = time.time()
            REDACTOR.add(pair.private_key)
            db["ssh_identities"].insert(
                {
                    "owner": owner,
                    "cluster": cluster,
                    "public_key": pair.public_key,
                    "fingerprint": pair.fingerprint,
                    "ciphertext": self.box.encrypt(pair.private_key),
                    "created_at": now,
                }
            )
        return SshIdentity(owner, cluster, pair.public_key, pair.fingerprint, pair.private_key, now), True

    def ssh_identity_public(self, owner: str, fingerprint: str) -> tuple[str, str] | None:
        """(public key line, cluster) of this person's key with this SHA256 fingerprint, without decrypting."""
        with self._lock:
            row = self.db.execute(
                "SELECT public_key, cluster FROM ssh_identities WHERE owner = ? AND fingerprint = ?",
                [owner, fingerprint],
            ).fetchone()
        return (row[0], row[1]) if row else None

    # ------------------------------------------------------------------ host keys trusted on first use

    def trust_host_key(self, key: TrustedHostKey) -> None:
        with self.transaction() as db:
            db["trusted_host_keys"].upsert(key.__dict__, pk=("host", "key_type"))

    def trusted_host_keys(self) -> list[TrustedHostKey]:
        with self._lock:
            rows = self.db.execute(
                "SELECT host, key_type, key_base64, fingerprint, trusted_by, trusted_at FROM trusted_host_keys "
                "ORDER BY host, key_type"
            ).fetchall()
        return [TrustedHostKey(*row) for row in rows]
