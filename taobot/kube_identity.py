"""Which Kubernetes identity a launch acts as, decided from its credentials and the bot's settings.

`identity_of`, in this order:

1. `TAO_K8S_PROFILE=own-kubeconfig` (or, without a profile, `KUBECONFIG_CONTENT` alone):
   the person's uploaded kubeconfig, checked by `taobot.kube_upload`;
2. `TAO_K8S_PROFILE=<name>`: the operator's cluster profile (`PlatformSettings.kube_profiles`),
   with its kubeconfig + context or the bot's in-cluster service account; its namespaces bound
   TAO_K8S_NAMESPACE (`check_namespace`), and TAO_K8S_CONTEXT may not pick another context
   of the operator's file;
3. `KUBECONFIG` (a path) - only on the person's own machine (`taobot console`, the preflight
   CLI: `PlatformSettings.on_persons_machine`);
4. on the person's own machine only: the default kubeconfig (the bot's KUBECONFIG, else
   ~/.kube/config), else the in-cluster service account.

In Slack there is no fallback: without a profile or an upload the identity is refused
(`KubeConfigUnusable`) before anything is loaded or asked. Whether the person may use the
profile they chose is the services' question (`taobot.services.kube_access`), who know the
person and the channel. No I/O here beyond reading a Pod's own namespace file.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from taobot.config import PlatformSettings
from taobot.errors import TaobotError
from taobot.kube_profiles import OWN_KUBECONFIG, KubeProfile, profile_named
from taobot.kube_upload import UploadedKubeconfig, UploadRefused, read_uploaded_kubeconfig

DEFAULT_NAMESPACE = "default"
DEFAULT_KUBECONFIG = "~/.kube/config"
# where a Pod's service account credentials are mounted (module-level so tests can point elsewhere)
INCLUSTER_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
INCLUSTER_TOKEN_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/token"
INCLUSTER_CA_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
NO_IDENTITY = (
    "Press *Enter credentials* and choose one of the operator's cluster profiles (TAO_K8S_PROFILE), or upload your "
    "own kubeconfig there (its user must have a `token` or an embedded client certificate)."
)

# kubeconfig `user` keys whose values are credentials
SECRET_KEYS = frozenset(
    {
        "token",
        "password",
        "client-key-data",
        "id-token",
        "refresh-token",
        "access-token",
        "client-secret",
        "apiKey",
        "api-key",
    }
)


@dataclass
class KubeClient:
    api: object  # kubernetes.client.ApiClient
    server: str
    source: str  # what was loaded, for a person: "kubeconfig `…` (KUBECONFIG), context `…`"
    context: str = ""  # the kubeconfig context used ("" for the in-cluster service account)
    secrets: frozenset[str] = frozenset()  # credential values met while loading, for the caller's redaction
    memory_files: tuple[int, ...] = field(default=(), repr=False)  # memfds holding an uploaded client certificate

    def close(self) -> None:
        try:
            self.api.close()
        except Exception:  # noqa: BLE001 - closing a pool must not turn a result into a crash
            pass
        for fd in self.memory_files:
            try:
                os.close(fd)
            except OSError:
                pass
        self.memory_files = ()


class KubeConfigUnusable(TaobotError):
    """No ApiClient can be built from this configuration. `detail` says why, `remediation` what to change;
    both are redacted."""

    def __init__(self, detail: str, remediation: str = "") -> None:
        super().__init__(detail, remediation=remediation)
        self.detail = detail
        self.remediation = remediation


@dataclass(frozen=True)
class Identity:
    """Who a launch acts as on the cluster; `key` names it for caching and never holds a credential."""

    kind: str  # "upload", "profile", "path" or "default"
    key: str
    origin: str  # for a person: "your uploaded kubeconfig", "cluster profile `lab`", "KUBECONFIG", …
    paths: str | None = None  # kubeconfig path list (profile, path, default)
    context: str | None = None
    profile: KubeProfile | None = None
    upload: UploadedKubeconfig | None = None


# --------------------------------------------------------------------------- which identity


def _upload_of(credentials: Mapping[str, str]) -> UploadedKubeconfig:
    content = credentials.get("KUBECONFIG_CONTENT") or ""
    if not content:
        raise KubeConfigUnusable(
            f"TAO_K8S_PROFILE is `{OWN_KUBECONFIG}` (your own kubeconfig) but no kubeconfig is uploaded", NO_IDENTITY
        )
    try:
        return read_uploaded_kubeconfig(content)
    except UploadRefused as exc:
        raise KubeConfigUnusable(f"your uploaded kubeconfig cannot be used: {exc}", NO_IDENTITY) from None


def profile_of(credentials: Mapping[str, str], settings: PlatformSettings) -> KubeProfile | None:
    """The operator profile TAO_K8S_PROFILE names, or None (no profile, or the person's own kubeconfig)."""
    choice = credentials.get("TAO_K8S_PROFILE") or ""
    if not choice or choice == OWN_KUBECONFIG:
        return None
    return profile_named(settings.kube_profiles, choice)


def identity_of(credentials: Mapping[str, str], settings: PlatformSettings) -> Identity:
    """The identity these credentials name; raises KubeConfigUnusable (before any request) when none may be used."""
    choice = credentials.get("TAO_K8S_PROFILE") or ""
    context = credentials.get("TAO_K8S_CONTEXT") or None
    if choice == OWN_KUBECONFIG or (not choice and credentials.get("KUBECONFIG_CONTENT")):
        upload = _upload_of(credentials)
        if context and context != upload.context:
            raise KubeConfigUnusable(
                f"TAO_K8S_CONTEXT is `{context}` but your uploaded kubeconfig has only context `{upload.context}`",
                "Clear TAO_K8S_CONTEXT (More settings), or upload a kubeconfig whose current context is the one you want.",
            )
        digest = hashlib.sha256(upload.text.encode()).hexdigest()[:16]
        return Identity("upload", f"upload:{digest}", "your uploaded kubeconfig", context=upload.context, upload=upload)
    if choice:
        profile = profile_named(settings.kube_profiles, choice)
        if profile is None:
            names = ", ".join(f"`{p.name}`" for p in settings.kube_profiles) or "none"
            raise KubeConfigUnusable(
                f"there is no cluster profile `{choice}` (the operator's profiles: {names})",
                "Choose another profile with *Enter credentials*, or upload your own kubeconfig there.",
            )
        if context and context != (profile.context or ""):
            raise KubeConfigUnusable(
                f"TAO_K8S_CONTEXT `{context}` would choose another context than cluster profile `{profile.name}` uses",
                "Clear TAO_K8S_CONTEXT (More settings): a profile fixes its own context.",
            )
        return Identity(
            "profile",
            f"profile:{profile.name}",
            f"cluster profile `{profile.name}`",
            paths=profile.kubeconfig,
            context=profile.context,
            profile=profile,
        )
    given = credentials.get("KUBECONFIG") or ""
    if given and not settings.on_persons_machine:
        raise KubeConfigUnusable(
            "KUBECONFIG names a file on the bot's host, which a person in Slack may not choose",
            NO_IDENTITY + " A kubeconfig path works in `taobot console` on your own machine.",
        )
    if given:
        return Identity("path", f"path:{given}", "KUBECONFIG", paths=given, context=context)
    if not settings.on_persons_machine:
        raise KubeConfigUnusable(
            "no Kubernetes identity: neither a cluster profile nor your own kubeconfig is chosen for this launch "
            "(the bot's own kubeconfig and service account are used only through a profile)",
            NO_IDENTITY,
        )
    spec = settings.kubeconfig or DEFAULT_KUBECONFIG
    return Identity("default", f"default:{spec}", "default location", paths=spec, context=context)


def identity_key(credentials: Mapping[str, str], settings: PlatformSettings) -> str:
    """Which identity, as a cache key (no credential in it); an unusable one gets a key of its own."""
    try:
        return identity_of(credentials, settings).key
    except KubeConfigUnusable:
        return "unusable:" + (credentials.get("TAO_K8S_PROFILE") or credentials.get("KUBECONFIG") or "")


def namespace_for(credentials: Mapping[str, str], settings: PlatformSettings) -> str:
    """TAO_K8S_NAMESPACE; else the profile's first namespace, the upload's context namespace or (in a cluster,
    without a kubeconfig) the pod's own namespace; else `default`."""
    named = credentials.get("TAO_K8S_NAMESPACE")
    if named:
        return named
    choice = credentials.get("TAO_K8S_PROFILE") or ""
    profile = profile_of(credentials, settings)
    if profile is not None:
        return profile.default_namespace
    if choice == OWN_KUBECONFIG or (not choice and credentials.get("KUBECONFIG_CONTENT")):
        try:
            return _upload_of(credentials).namespace or DEFAULT_NAMESPACE
        except KubeConfigUnusable:
            return DEFAULT_NAMESPACE
    if not choice and not credentials.get("KUBECONFIG") and settings.in_cluster and settings.on_persons_machine:
        try:
            with open(INCLUSTER_NAMESPACE_FILE, encoding="utf-8") as fh:
                own = fh.read().strip()
            if own:
                return own
        except OSError:
            pass
    return DEFAULT_NAMESPACE


def check_namespace(credentials: Mapping[str, str], settings: PlatformSettings) -> None:
    """With a profile, the namespace must be one of the profile's; raises KubeConfigUnusable listing them."""
    profile = profile_of(credentials, settings)
    if profile is None:
        return
    ns = namespace_for(credentials, settings)
    if ns not in profile.namespaces:
        listed = ", ".join(f"`{n}`" for n in profile.namespaces)
        raise KubeConfigUnusable(
            f"namespace `{ns}` is not one of cluster profile `{profile.name}`'s namespaces ({listed})",
            f"Set TAO_K8S_NAMESPACE (More settings) to one of {listed}, or clear it to use `{profile.default_namespace}`.",
        )


def load_limit(settings: PlatformSettings) -> float:
    """How long loading a context may take: exec credential plugins (aws, gcloud) run here, without a timeout."""
    return max(10.0, 3 * float(settings.connect_timeout_s))


def redact(text: str, secrets) -> str:
    """`text` with every secret value (longest first) replaced by ***."""
    for s in sorted(secrets, key=len, reverse=True):
        text = text.replace(s, "***")
    return text


def short(value: object, limit: int = 300) -> str:
    """`value` as one line of at most `limit` characters."""
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
