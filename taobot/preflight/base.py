"""Preflight building blocks: what a check reports and what it is given.

A platform module exposes `check(request) -> list[CheckResult]` and never
raises for a failed check: an unreachable daemon, a refused key or a
missing path is a result with ok=False and the exact remediation. Only
programming errors escape, and `run_preflight` turns even those into a
failed result so the card always completes.

Scopes tie results to gate conditions: "platform" results are the platform
access check (gate condition 5); "dataset" results carry the spec key or
label they verified in `key` (gate condition 6).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from taobot.catalog.schema import ResourceDefaults
from taobot.config import PlatformSettings

if TYPE_CHECKING:  # only named in PreflightRequest's annotation; the `taobot preflight` command never loads a policy
    from taobot.policy import MountRules

Scope = Literal["credentials", "limits", "platform", "dataset", "mount"]


@dataclass(frozen=True)
class CheckResult:
    check: str  # stable id, e.g. "slurm.login", "path"
    label: str  # short, for the card: "SSH login", "custom.train_dataset.annotation_path"
    ok: bool
    detail: str  # what was found; never a secret value
    remediation: str = ""  # exact steps when not ok
    scope: Scope = "platform"
    key: str | None = None  # the dataset label / spec key a "dataset" or "mount" result is about

    def to_dict(self) -> dict:
        return {
            "check": self.check,
            "label": self.label,
            "ok": self.ok,
            "detail": self.detail,
            "remediation": self.remediation,
            "scope": self.scope,
            "key": self.key,
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> "CheckResult":
        return cls(**{k: d.get(k) for k in ("check", "label", "ok", "detail", "remediation", "scope", "key")})


@dataclass(frozen=True)
class DatasetPath:
    label: str  # spec key (Slack) or LABEL (CLI)
    path: str  # as given: /abs, lustre:///abs, file:///abs, s3://bucket/key
    annotation_fields: tuple[str, ...] = ()  # fields every sampled record must have


@dataclass(frozen=True)
class PreflightRequest:
    platform: str
    credentials: Mapping[str, str]  # name -> value (decrypted only for the run; never logged)
    paths: tuple[DatasetPath, ...] = ()
    results_uri: str | None = None
    compute: Mapping[str, int] = field(default_factory=dict)
    resources: ResourceDefaults = ResourceDefaults()
    mount_confirmed: frozenset[str] = frozenset()  # non-s3 paths confirmed mounted (remote platforms)
    settings: PlatformSettings = PlatformSettings()
    skip_platform_access: bool = False  # CLI dry checks only; never from Slack
    owner: str | None = None  # whose launch: a Slack person's SSH identity is held to their own (taobot.identities)
    mounts: MountRules | None = None  # host folders local-docker may mount (the policy's); None: not checked (CLI)

    def cred(self, name: str) -> str | None:
        value = self.credentials.get(name)
        return value if value else None


@dataclass
class PreflightReport:
    platform: str
    results: list[CheckResult]
    skipped_platform_access: bool = False

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(r.ok for r in self.results) and not self.skipped_platform_access

    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if not r.ok]


Progress = Callable[[list[CheckResult], str | None], None]  # results so far, name of the stage now running


# --------------------------------------------------------------------------- path helpers


def local_path(path: str) -> str | None:
    """The filesystem path inside lustre:///x, file:///x or /x; None for s3:// and others."""
    if path.startswith("/"):
        return path
    match = re.match(r"^(?:lustre|file)://(/.*)$", path)
    return match.group(1) if match else None


def split_s3(uri: str) -> tuple[str, str]:
    """s3://bucket/key/prefix -> (bucket, key/prefix)."""
    rest = uri[len("s3://") :]
    bucket, _, key = rest.partition("/")
    return bucket, key


def quote(value: str) -> str:
    """Shell-quote a value; every path that reaches a shell goes through here."""
    return shlex.quote(value)


# Records in an annotation file: a JSON list, or a list under one of these keys.
RECORD_KEYS = ("annotations", "data", "samples", "items")


def annotation_records(document: object) -> list | None:
    if isinstance(document, list):
        return document
    if isinstance(document, dict):
        for key in RECORD_KEYS:
            if isinstance(document.get(key), list):
                return document[key]
    return None


def check_annotation_document(document: object, fields: tuple[str, ...], sample: int = 20) -> tuple[bool, str]:
    """Whether the first `sample` records all have every required field, and what was found."""
    records = annotation_records(document)
    if records is None:
        return False, "no records: expected a JSON list, or a list under " + "/".join(RECORD_KEYS)
    if not records:
        return False, "the record list is empty"
    head = records[:sample]
    missing: dict[str, int] = {}
    for record in head:
        for f in fields:
            if not isinstance(record, dict) or f not in record:
                missing[f] = missing.get(f, 0) + 1
    if missing:
        parts = ", ".join(f"`{f}` missing in {n} of {len(head)}" for f, n in missing.items())
        return False, f"sampled {len(head)} records: {parts}"
    return True, f"sampled {len(head)} records; all have " + ", ".join(f"`{f}`" for f in fields)
