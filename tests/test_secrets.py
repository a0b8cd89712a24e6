"""Encryption at rest, fingerprints, key handling and redaction of secret values."""

from __future__ import annotations

import io
import logging
import os
import stat

import pytest
from cryptography.fernet import Fernet

from taobot.errors import ConfigError, SecretError
from taobot.secret_shapes import looks_like_secret
from taobot.secrets import (
    REDACTED,
    RedactingFilter,
    Redactor,
    SecretBox,
    load_or_create_key,
)

HF = "hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"
SLACK = "xox" + "b-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"
PEM = (
    "-----BEGIN OPENSSH "
    "PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "QyNTUxOQAAACBkZXJpdmVkLWtleS1tYXRlcmlhbC1ub3QtcmVhbAAAAJgAAAAAAAAAAA==\n"
    "-----END OPENSSH PRIVATE KEY-----"
)
PEM_BODY = "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ"


# --------------------------------------------------------------------------- SecretBox


def test_secretbox_round_trip():
    box = SecretBox(Fernet.generate_key())
    for value in ["s3cr3t-value", "ünïcødé ✓", "x" * 10_000]:
        token = box.encrypt(value)
        assert isinstance(token, bytes)
        assert value.encode() not in token
        assert box.decrypt(token) == value


def test_secretbox_encryption_is_randomised():
    box = SecretBox(Fernet.generate_key())
    assert box.encrypt("same") != box.encrypt("same")


def test_fingerprint_is_stable_for_a_key_and_value():
    key = Fernet.generate_key()
    a, b = SecretBox(key), SecretBox(key)
    assert a.fingerprint("hunter22") == b.fingerprint("hunter22") == a.fingerprint("hunter22")
    fp = a.fingerprint("hunter22")
    assert len(fp) == 16 and all(c in "0123456789abcdef" for c in fp)
    assert "hunter22" not in fp


def test_fingerprint_differs_for_other_values_and_other_keys():
    key = Fernet.generate_key()
    box = SecretBox(key)
    assert box.fingerprint("value-one") != box.fingerprint("value-two")
    assert box.fingerprint("value-one") != box.fingerprint("value-one ")
    assert SecretBox(Fernet.generate_key()).fingerprint("value-one") != box.fingerprint("value-one")


def test_wrong_key_raises_secret_error_without_the_value():
    token = SecretBox(Fernet.generate_key()).encrypt("do-not-show-me")
    with pytest.raises(SecretError) as info:
        SecretBox(Fernet.generate_key()).decrypt(token)
    assert "do-not-show-me" not in str(info.value)


def test_tampered_token_raises_secret_error():
    box = SecretBox(Fernet.generate_key())
    token = bytearray(box.encrypt("value"))
    token[-5] = ord("A") if token[-5] != ord("A") else ord("B")
    with pytest.raises(SecretError):
        box.decrypt(bytes(token))
    with pytest.raises(SecretError):
        box.decrypt(b"not a token at all")


# --------------------------------------------------------------------------- key handling


def test_key_file_is_created_private_and_reused(tmp_path):
    key_file = tmp_path / "state" / "sub" / "secret.key"
    old = os.umask(0)  # even a permissive umask must not widen the file
    try:
        key = load_or_create_key(None, key_file)
    finally:
        os.umask(old)
    assert key_file.exists()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    Fernet(key)  # a usable key
    assert key_file.read_bytes().strip() == key
    again = load_or_create_key(None, key_file)
    assert again == key
    token = SecretBox(key).encrypt("persisted")
    assert SecretBox(again).decrypt(token) == "persisted"


def test_explicit_key_wins_and_writes_no_file(tmp_path):
    explicit = Fernet.generate_key().decode()
    key_file = tmp_path / "secret.key"
    assert load_or_create_key(f"  {explicit}\n", key_file) == explicit.encode()
    assert not key_file.exists()


@pytest.mark.parametrize("bad", ["not-a-key", "c2hvcnQ=", "x" * 44, "🔑" * 11])
def test_malformed_explicit_key_names_the_setting(tmp_path, bad):
    with pytest.raises(ConfigError) as info:
        load_or_create_key(bad, tmp_path / "secret.key")
    assert info.value.setting == "TAOBOT_SECRET_KEY"
    assert "TAOBOT_SECRET_KEY" in info.value.message
    assert bad not in info.value.message  # the (wrong) key itself is not echoed
    assert not (tmp_path / "secret.key").exists()


def test_malformed_key_file_names_the_file_setting(tmp_path):
    key_file = tmp_path / "secret.key"
    key_file.write_text("garbage\n")
    with pytest.raises(ConfigError) as info:
        load_or_create_key(None, key_file)
    assert info.value.setting == "TAOBOT_SECRET_KEY_FILE"
    assert key_file.read_text() == "garbage\n"  # never overwritten


# --------------------------------------------------------------------------- detection


@pytest.mark.parametrize(
    "text",
    [
        SLACK,
        HF,
        PEM,
        "AKIA" + "IOSFODNN7EXAMPLE",
        "HF_TOKEN=abcdefgh12",
        "password: correcthorse",
        "9fK2mQ7xLp4Rt8Wv1Zb6Nc3Hd5Gj0Ys2Ae",
    ],
)
def test_secret_shapes_are_detected(text):
    reason = looks_like_secret(text, frozenset({"HF_TOKEN"}))
    assert reason
    assert text not in reason


@pytest.mark.parametrize(
    "text",
    [
        "platform=slurm monitor=yes interval=5",
        "train=/lustre/fsw/team/AbCdEfGhIjKlMnOpQrStUvWxYz0123456789/data",
        "image=nvcr.io/nvidia/tao/tao-toolkit@sha256:" + "ab12" * 16,
        "HF_TOKEN=short",
        "AUTH_FILE=/home/bot/.auth/token.json",
        "allthelowercaselettersinarowwithoutdigits",
    ],
)
def test_ordinary_text_is_not_a_secret(text):
    assert looks_like_secret(text, frozenset({"HF_TOKEN"})) is None


# --------------------------------------------------------------------------- Redactor


def test_redactor_removes_registered_values_and_token_shapes():
    r = Redactor()
    r.add("my-registered-password")
    r.add("abc")  # too short to redact safely; ignored
    r.add(None)
    text = f"user=jdoe pw=my-registered-password tok={SLACK} hf={HF} key={PEM} abc"
    out = r.redact(text)
    for secret in ["my-registered-password", SLACK, HF, PEM_BODY, "BEGIN OPENSSH PRIVATE KEY"]:
        assert secret not in out
    assert "user=jdoe" in out and out.endswith(" abc")
    assert out.count(REDACTED) == 4


def test_redactor_prefers_the_longest_registered_value():
    r = Redactor()
    r.add("secret-1234")
    r.add("secret-1234-extended")
    assert r.redact("a secret-1234-extended b secret-1234") == f"a {REDACTED} b {REDACTED}"


def test_redactor_leaves_clean_text_alone():
    r = Redactor()
    r.add("registered-value")
    assert r.redact("") == ""
    assert r.redact("nothing to see at /lustre/data") == "nothing to see at /lustre/data"


def test_unterminated_private_key_is_removed_to_the_end():
    out = Redactor().redact("loaded -----BEGIN RSA " + "PRIVATE KEY-----\nMIIEpAIBAAKCAQEA7\nmore key")
    assert out == f"loaded {REDACTED}"


# --------------------------------------------------------------------------- RedactingFilter


@pytest.fixture
def captured():
    redactor = Redactor()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(RedactingFilter(redactor))
    logger = logging.getLogger(f"taobot.test.secrets.{id(stream)}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield logger, redactor, stream
    logger.removeHandler(handler)


def test_filter_redacts_the_message(captured):
    logger, redactor, stream = captured
    redactor.add("registered-secret-value")
    logger.info("token %s and registered-secret-value", SLACK)
    out = stream.getvalue()
    assert SLACK not in out and "registered-secret-value" not in out
    assert out.count(REDACTED) == 2


def test_filter_redacts_args(captured):
    logger, redactor, stream = captured
    redactor.add("value-from-the-store")
    logger.warning("user %s has %s", "jdoe", "value-from-the-store")
    logger.warning("mapping %(tok)s", {"tok": HF})
    out = stream.getvalue()
    assert "value-from-the-store" not in out and HF not in out
    assert "user jdoe has [redacted]" in out and "mapping [redacted]" in out


def test_filter_clears_args_after_rendering():
    redactor = Redactor()
    redactor.add("arg-secret-value")
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "got %s", ("arg-secret-value",), None)
    assert RedactingFilter(redactor).filter(record) is True
    assert record.args is None
    assert record.getMessage() == f"got {REDACTED}"


def test_filter_redacts_exception_text(captured):
    logger, redactor, stream = captured
    redactor.add("db-password-9876")
    try:
        raise RuntimeError(f"login failed with db-password-9876 and {HF}\n{PEM}")
    except RuntimeError:
        logger.exception("launch failed")
    out = stream.getvalue()
    assert "Traceback" in out and "RuntimeError" in out
    for secret in ["db-password-9876", HF, PEM_BODY]:
        assert secret not in out
    assert REDACTED in out


def test_filter_redacts_exception_text_formatted_earlier():
    redactor = Redactor()
    record = logging.LogRecord("t", logging.ERROR, __file__, 1, "boom", None, None)
    record.exc_text = f"Traceback ...\nValueError: {SLACK}"
    RedactingFilter(redactor).filter(record)
    assert SLACK not in record.exc_text and REDACTED in record.exc_text


def test_filter_keeps_clean_records_as_they_were():
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "plain message", None, None)
    assert RedactingFilter(Redactor()).filter(record) is True
    assert record.msg == "plain message"
