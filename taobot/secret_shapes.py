"""What a secret looks like: known token shapes and a check for pasted secrets.

Pure (no keys, no I/O), so the intake core can refuse a pasted secret
without depending on the module that holds the encryption key.
"""

from __future__ import annotations

import re

# Shapes of well-known credentials. A match in thread text means someone
# pasted a secret where everyone in the channel can read it.
SECRET_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
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
PEM_PRIVATE_KEY = re.compile(r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----.*?(?:-----END \1PRIVATE KEY-----|\Z)", re.DOTALL)
_SECRET_NAME = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|NGC_KEY|AUTH)", re.IGNORECASE)
_LONG_RANDOM = re.compile(r"(?<![/\w.-])[A-Za-z0-9+_-]{32,}(?![/\w.-])")


def _looks_random(token: str) -> bool:
    return bool(re.search(r"[a-z]", token) and re.search(r"[A-Z]", token) and re.search(r"\d", token))


def looks_like_secret(text: str, credential_names: frozenset[str] = frozenset()) -> str | None:
    """Why this text looks like it contains a secret, or None.

    Checks known token shapes, `NAME=value` where NAME is a credential or
    sounds secret, and long random-looking words (paths are not words).
    """
    for label, pattern in SECRET_PATTERNS:
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
