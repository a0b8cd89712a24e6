"""Encryption at rest, fingerprints and redaction of secret values.

What a secret looks like is in `secret_shapes.py`; this module holds keys.

Credential values are encrypted with Fernet (AES-128-CBC + HMAC-SHA256) under
a key from TAOBOT_SECRET_KEY or a generated 0600 key file beside the
database. A fingerprint (keyed HMAC) lets the gate notice that a value
changed without ever storing or comparing the value itself.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import threading
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from taobot.errors import ConfigError, SecretError
from taobot.secret_shapes import PEM_PRIVATE_KEY, SECRET_PATTERNS

REDACTED = "[redacted]"


class Redactor:
    """Replaces every known secret value (and token-shaped text) with [redacted].

    Shared process-wide so log records, Slack messages and error texts all
    pass through the same list of values.
    """

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()

    def add(self, value: str | None) -> None:
        if value and len(value) >= 4:
            with self._lock:
                self._values.add(value)

    def redact(self, text: str) -> str:
        if not text:
            return text
        with self._lock:
            values = sorted(self._values, key=len, reverse=True)
        for value in values:
            if value in text:
                text = text.replace(value, REDACTED)
        text = PEM_PRIVATE_KEY.sub(REDACTED, text)
        for _label, pattern in SECRET_PATTERNS:
            text = pattern.sub(REDACTED, text)
        return text


REDACTOR = Redactor()


class RedactingFilter(logging.Filter):
    """Logging filter that redacts the rendered message and any exception text."""

    def __init__(self, redactor: Redactor = REDACTOR) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.redactor.redact(message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redactor.redact(record.exc_text)
        if redacted != message or record.args:
            record.msg, record.args = redacted, None
        return True


def load_or_create_key(explicit: str | None, key_file: Path) -> bytes:
    """The Fernet key: explicit value, else the key file, else a new 0600 key file."""
    if explicit:
        key = explicit.strip().encode()
        _check_key(key, "TAOBOT_SECRET_KEY")
        return key
    try:
        present = key_file.exists()
    except OSError as exc:
        raise ConfigError(
            f"TAOBOT_SECRET_KEY_FILE: cannot look at {key_file}: {exc.strerror}", "TAOBOT_SECRET_KEY_FILE"
        ) from exc
    if present:
        try:
            key = key_file.read_bytes().strip()
        except OSError as exc:
            raise ConfigError(
                f"TAOBOT_SECRET_KEY_FILE: cannot read {key_file}: {exc.strerror}", "TAOBOT_SECRET_KEY_FILE"
            ) from exc
        _check_key(key, "TAOBOT_SECRET_KEY_FILE")
        return key
    key = Fernet.generate_key()
    key_file.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL: two processes starting at once must not both write a key.
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return load_or_create_key(None, key_file)
    except OSError as exc:
        raise ConfigError(
            f"TAOBOT_SECRET_KEY_FILE: cannot create {key_file}: {exc.strerror}", "TAOBOT_SECRET_KEY_FILE"
        ) from exc
    with os.fdopen(fd, "wb") as fh:
        fh.write(key + b"\n")
    return key


def _check_key(key: bytes, setting: str) -> None:
    try:
        Fernet(key)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"{setting}: not a valid key (expected 32 url-safe base64-encoded bytes; "
            "generate one with `python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`)",
            setting,
        ) from exc


class SecretBox:
    """Encrypts and decrypts credential values; fingerprints them."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)
        self._mac_key = hashlib.sha256(b"taobot-fingerprint:" + key).digest()

    def encrypt(self, value: str) -> bytes:
        return self._fernet.encrypt(value.encode())

    def decrypt(self, token: bytes) -> str:
        try:
            return self._fernet.decrypt(token).decode()
        except InvalidToken as exc:
            raise SecretError("a stored secret cannot be decrypted with the configured key") from exc

    def fingerprint(self, value: str) -> str:
        return hmac.new(self._mac_key, value.encode(), hashlib.sha256).hexdigest()[:16]
