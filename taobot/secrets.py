"""Encryption at rest, fingerprints and redaction of secret values.

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
import re
import threading
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from taobot.errors import ConfigError, SecretError

REDACTED = "[redacted]"

# Shapes of well-known credentials. A match in thread text means someone
# pasted a secret where everyone in the channel can read it.
_SECRET_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("a private key", re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")),
    ("a Slack token", re.compile(r"\bxox[abposr]-[0-9A-Za-z-]{10,}")),
    ("a Slack app token", re.compile(r"\bxapp-[0-9A-Za-z-]{10,}")),
    ("an AWS access key id", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("a Hugging Face token", re.compile(r"\bhf_[A-Za-z0-9]{30,}")),
    ("an NGC / NVIDIA API key", re.compile(r"\bnvapi-[A-Za-z0-9_-]{20,}")),
    ("a GitHub token", re.compile(r"\b(?:ghp|gho|ghs|github_pat)_[A-Za-z0-9_]{20,}")),
    ("a JSON web token", re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]+")),
]
# A whole PEM private key (header, body, footer): redacting only the header
# would leave the key material itself in the text.
_PEM_PRIVATE_KEY = re.compile(
    r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----.*?(?:-----END \1PRIVATE KEY-----|\Z)", re.DOTALL
)
_SECRET_NAME = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|NGC_KEY|AUTH)", re.IGNORECASE)
_LONG_RANDOM = re.compile(r"(?<![/\w.-])[A-Za-z0-9+_-]{32,}(?![/\w.-])")


def _looks_random(token: str) -> bool:
    return bool(re.search(r"[a-z]", token) and re.search(r"[A-Z]", token) and re.search(r"\d", token))


def looks_like_secret(text: str, credential_names: frozenset[str] = frozenset()) -> str | None:
    """Why this text looks like it contains a secret, or None.

    Checks known token shapes, `NAME=value` where NAME is a credential or
    sounds secret, and long random-looking words (paths are not words).
    """
    for label, pattern in _SECRET_PATTERNS:
        if pattern.search(text):
            return label
    for match in re.finditer(r"([A-Za-z_][A-Za-z0-9_.]*)\s*[=:]\s*(\S+)", text):
        name, value = match.group(1), match.group(2)
        if name.upper() in credential_names or _SECRET_NAME.search(name):
            if len(value) >= 8 and not value.startswith(("/", "s3://", "file://", "lustre://")):
                return f"a value for {name.upper()}"
    for match in _LONG_RANDOM.finditer(text):
        if _looks_random(match.group(0)):
            return "a long random-looking token"
    return None


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
        text = _PEM_PRIVATE_KEY.sub(REDACTED, text)
        for _label, pattern in _SECRET_PATTERNS:
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
        raise ConfigError(f"TAOBOT_SECRET_KEY_FILE: cannot look at {key_file}: {exc.strerror}", "TAOBOT_SECRET_KEY_FILE") from exc
    if present:
        try:
            key = key_file.read_bytes().strip()
        except OSError as exc:
            raise ConfigError(f"TAOBOT_SECRET_KEY_FILE: cannot read {key_file}: {exc.strerror}", "TAOBOT_SECRET_KEY_FILE") from exc
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
        raise ConfigError(f"TAOBOT_SECRET_KEY_FILE: cannot create {key_file}: {exc.strerror}", "TAOBOT_SECRET_KEY_FILE") from exc
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
