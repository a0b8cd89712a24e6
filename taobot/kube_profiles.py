"""Operator cluster profiles: named Kubernetes identities a person in Slack may launch with.

A profile is the operator's, read from the policy file (`kubernetes_profiles:`): which
kubeconfig + context (an operator path on the bot's host) or the bot's in-cluster service
account it uses, the namespaces it may launch into (the first is the default), who may use
it (`users`, `channels`: both empty means everyone, otherwise a listed user or a listed
channel, as for the policy's platforms), and the PersistentVolumeClaims every Job launched
with it mounts.

In Slack the bot's own identities are reachable only through a profile that names them and
that the person may use (`usable_profiles`); a person without one uploads their own
kubeconfig. Pure values and functions: no I/O, so the core may import them.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

# RFC 1123 label (namespaces) and subdomain (claims), as the apiserver validates them
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_SUBDOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{2,}$")
# TAO_K8S_PROFILE's value for "the kubeconfig I uploaded" (KUBECONFIG_CONTENT); no profile may take the name
OWN_KUBECONFIG = "own-kubeconfig"
# where the Job's container already mounts its spec, results and shared memory (backends/kube_manifests.py)
RESERVED_MOUNT_PATHS = ("/tao/specs", "/tao/results", "/dev/shm")


def clean_path(path: str) -> str:
    """`path` normalised as a POSIX path (no trailing slash, no `.`/`..` parts left)."""
    return posixpath.normpath(path) if path else path


class KubeVolume(BaseModel):
    """One PersistentVolumeClaim mounted into every Job of a profile."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    claim: str  # the PVC's name, in the launch's namespace
    mount_path: str  # where the container sees it
    read_only: bool = True
    sub_path: str | None = None  # a folder inside the claim, mounted instead of its root

    @field_validator("claim")
    @classmethod
    def _claim(cls, v: str) -> str:
        if not _SUBDOMAIN.match(v):
            raise ValueError(f"claim {v!r} is not a PersistentVolumeClaim name (lower-case letters, digits, '-', '.')")
        return v

    @field_validator("mount_path")
    @classmethod
    def _mount_path(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError(f"mount_path {v!r} must be an absolute path")
        cleaned = clean_path(v)
        if cleaned == "/":
            raise ValueError("mount_path `/` would hide the container's own file system")
        for reserved in RESERVED_MOUNT_PATHS:
            if reserved == cleaned or reserved.startswith(cleaned + "/") or cleaned.startswith(reserved + "/"):
                raise ValueError(f"mount_path {v!r} collides with `{reserved}`, which every TAO Job mounts itself")
        return cleaned

    @field_validator("sub_path")
    @classmethod
    def _sub_path(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None
        cleaned = clean_path(v)
        if v.startswith("/") or cleaned == ".." or cleaned.startswith("../"):
            raise ValueError(f"sub_path {v!r} must be a relative path inside the claim (no leading '/', no '..')")
        return cleaned


class KubeProfile(BaseModel):
    """A named cluster identity of the operator's, with its namespaces, users and volumes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kubeconfig: str | None = None  # a kubeconfig path on the bot's host (os.pathsep-separated list allowed)
    context: str | None = None  # a context in that kubeconfig; None: its current context
    in_cluster: bool = False  # the bot's own in-cluster service account instead of a kubeconfig
    namespaces: list[str] = Field(min_length=1)  # the first is the default
    users: list[str] = Field(default_factory=list)  # Slack user ids
    channels: list[str] = Field(default_factory=list)  # Slack channel ids
    volumes: list[KubeVolume] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"profile name {v!r}: use letters, digits, '.', '_', '-' (at most 63)")
        if v == OWN_KUBECONFIG:
            raise ValueError(f"profile name {v!r} is reserved: it means a person's own uploaded kubeconfig")
        return v

    @field_validator("users")
    @classmethod
    def _users(cls, v: list[str]) -> list[str]:
        bad = [u for u in v if not _USER_ID.match(u)]
        if bad:
            raise ValueError(f"{bad[0]!r} is not a Slack user id (like U012ABCDEF; a name or @handle is not one)")
        return v

    @field_validator("channels")
    @classmethod
    def _channels(cls, v: list[str]) -> list[str]:
        bad = [c for c in v if not _CHANNEL_ID.match(c)]
        if bad:
            raise ValueError(f"{bad[0]!r} is not a Slack channel id (like C012ABCDEF; a #name is not one)")
        return v

    @field_validator("namespaces")
    @classmethod
    def _namespaces(cls, v: list[str]) -> list[str]:
        bad = [n for n in v if not _LABEL.match(n)]
        if bad:
            raise ValueError(f"namespaces {bad} are not namespace names (lower-case letters, digits, '-')")
        if len(set(v)) != len(v):
            raise ValueError("namespaces are listed twice")
        return v

    @model_validator(mode="after")
    def _one_identity(self) -> KubeProfile:
        if self.in_cluster == bool(self.kubeconfig):
            raise ValueError(
                f"profile {self.name!r}: give either `kubeconfig` (+ optional `context`) or `in_cluster: true`"
            )
        if self.in_cluster and self.context:
            raise ValueError(f"profile {self.name!r}: `context` belongs to a kubeconfig, not to `in_cluster`")
        paths = [v.mount_path for v in self.volumes]
        if len(set(paths)) != len(paths):
            raise ValueError(f"profile {self.name!r}: two volumes have the same mount_path")
        return self

    @property
    def default_namespace(self) -> str:
        return self.namespaces[0]

    @property
    def mount_paths(self) -> list[str]:
        return [v.mount_path for v in self.volumes]

    @property
    def identity(self) -> str:
        """What the profile acts as, for a person (never a credential): `kubeconfig context …` / in-cluster."""
        if self.in_cluster:
            return "the bot's in-cluster service account"
        return f"context `{self.context}`" if self.context else "its kubeconfig's current context"

    def may_use(self, user: str, channel: str | None) -> bool:
        """Whether `user` may use this profile in `channel`: both lists empty, or the user or the channel listed."""
        if not self.users and not self.channels:
            return True
        return user in self.users or (channel is not None and channel in self.channels)

    @property
    def who(self) -> str:
        """Who may use it, in words (ids as Slack mentions)."""
        if not self.users and not self.channels:
            return "everyone"
        parts = [f"<@{u}>" for u in self.users] + [f"<#{c}>" for c in self.channels]
        return ", ".join(parts)

    def volume_for(self, path: str) -> KubeVolume | None:
        """The volume whose mount path holds `path` (the deepest one), or None."""
        if not path.startswith("/"):
            return None
        target = clean_path(path)
        best = None
        for volume in self.volumes:
            root = volume.mount_path
            if target == root or target.startswith(root + "/"):
                if best is None or len(root) > len(best.mount_path):
                    best = volume
        return best


def _unique_names(profiles: list[KubeProfile]) -> list[KubeProfile]:
    names = [p.name for p in profiles]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"kubernetes profile names must be unique; listed twice: {', '.join(twice)}")
    return profiles


# the policy file's `kubernetes_profiles:` with the list-level rule (names are unique) applied
KubeProfiles = Annotated[list[KubeProfile], AfterValidator(_unique_names)]


def usable_profiles(profiles: Iterable[KubeProfile], user: str, channel: str | None) -> list[KubeProfile]:
    """The profiles `user` may use in `channel`, in the operator's order."""
    return [p for p in profiles if p.may_use(user, channel)]


def profile_named(profiles: Iterable[KubeProfile], name: str) -> KubeProfile | None:
    return next((p for p in profiles if p.name == name), None)
