"""Talking to a kube-apiserver: the client cache, and readable text for what went wrong.

Which identity a launch acts as (`taobot.kube_identity`) and how it is loaded into a
private ApiClient (`taobot.kube_config`) are re-exported here, so preflight and the
backend import one module: an uploaded kubeconfig, an operator cluster profile, or — on a person's own
machine only — a kubeconfig path or the default kubeconfig / in-cluster account.

`ClientCache` keeps one loaded client per identity and context, so repeated calls
share a connection pool. `api_message` and `describe_network_error` turn an
ApiException or a urllib3 / socket error into one line for a person: the API
server's own message, or "connection refused", "TLS handshake failed (...)", "no
answer within 5 s".
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping

from taobot.config import PlatformSettings
from taobot.kube_config import load_client
from taobot.kube_identity import (
    DEFAULT_KUBECONFIG,
    DEFAULT_NAMESPACE,
    KubeClient,
    KubeConfigUnusable,
    check_namespace,
    identity_key,
    identity_of,
    load_limit,
    namespace_for,
    profile_of,
    redact,
    short,
)

__all__ = [
    "DEFAULT_KUBECONFIG",
    "DEFAULT_NAMESPACE",
    "ClientCache",
    "KubeClient",
    "KubeConfigUnusable",
    "api_message",
    "check_namespace",
    "could_not_ask",
    "describe_network_error",
    "identity_key",
    "identity_of",
    "is_api_error",
    "kubeconfig_of",
    "load_client",
    "load_limit",
    "namespace_for",
    "profile_of",
    "redact",
    "short",
    "status_of",
    "tls_text",
]

# the credentials that choose and shape a launch's identity (what ClientCache hands to load_client)
IDENTITY_CREDENTIALS = ("TAO_K8S_PROFILE", "KUBECONFIG_CONTENT", "KUBECONFIG", "TAO_K8S_NAMESPACE")


def kubeconfig_of(credentials: Mapping[str, str], settings: PlatformSettings) -> str:
    """Which identity these credentials use, as a stable key without any credential in it (for grouping)."""
    return identity_key(credentials, settings)


class ClientCache:
    """Loaded clients per (identity, context), so repeated calls share one connection pool per identity.

    Loading a kubeconfig can run an exec credential plugin, so it is done once, not per call. A caller that
    finds a client unusable (connection error, 401) drops it, and the next `get` loads the kubeconfig afresh:
    a refreshed token or a restarted API server is picked up without restarting the bot.
    """

    def __init__(self, settings: PlatformSettings) -> None:
        self.settings = settings
        self._clients: dict[tuple[str, str], KubeClient] = {}
        self._lock = threading.Lock()

    def _key(self, credentials: Mapping[str, str], context: str) -> tuple[str, str]:
        return kubeconfig_of(credentials, self.settings), context

    def get(self, credentials: Mapping[str, str], context: str) -> KubeClient:
        """The cached client for this identity + context; raises KubeConfigUnusable when it may not or cannot be built.

        Whether the identity may be used at all, and in this namespace, is decided afresh on every call (no I/O):
        a cached client never outlives the rule that allowed it.
        """
        identity_of(credentials, self.settings)
        check_namespace(credentials, self.settings)
        key = self._key(credentials, context)
        with self._lock:
            client = self._clients.get(key)
            if client is not None:
                return client
        client = load_client(
            {**{n: credentials.get(n) or "" for n in IDENTITY_CREDENTIALS}, "TAO_K8S_CONTEXT": context}, self.settings
        )
        with self._lock:
            old = self._clients.get(key)
            if old is not None:  # another thread built one meanwhile: keep that
                client.close()
                return old
            self._clients[key] = client
            if client.context and not context:  # jobs record the context actually used: they find this one too
                self._clients.setdefault((key[0], client.context), client)
        return client

    def drop(self, client: KubeClient) -> None:
        """Forget and close `client` under every key it is cached as."""
        with self._lock:
            for key, value in list(self._clients.items()):
                if value is client:
                    del self._clients[key]
        client.close()

    def close_for(self, credentials: Mapping[str, str], context: str) -> None:
        with self._lock:
            client = self._clients.pop(self._key(credentials, context), None)
        if client is not None:
            client.close()

    def close(self) -> None:
        with self._lock:
            clients = list(self._clients.values())
            self._clients.clear()
        for client in clients:
            client.close()

    def __len__(self) -> int:
        return len(self._clients)

    def values(self) -> list[KubeClient]:
        with self._lock:
            return list(self._clients.values())


# --------------------------------------------------------------------------- errors, as one line for a person


def is_api_error(exc: BaseException) -> bool:
    """The API server answered (an ApiException); anything else is a transport failure."""
    from kubernetes.client.exceptions import ApiException

    return isinstance(exc, ApiException)


def status_of(exc: BaseException) -> int | None:
    """The HTTP status of an ApiException (0 for the client's bare TLS errors); None for anything else."""
    return getattr(exc, "status", None) if is_api_error(exc) else None


def could_not_ask(exc: BaseException) -> bool:
    """Connection errors, TLS, timeouts, 5xx and 429: the API server could not be asked (never a refusal)."""
    if not is_api_error(exc):
        return True
    status = status_of(exc)
    return status in (0, None, 429) or status >= 500


def api_message(exc) -> str:
    """The API server's own message from an ApiException's Status body, else its reason."""
    body = getattr(exc, "body", None)
    if body:
        try:
            data = json.loads(body)
            if isinstance(data, dict) and data.get("message"):
                return short(data["message"])
        except (ValueError, TypeError):
            pass
    return short(getattr(exc, "reason", "") or f"HTTP {getattr(exc, 'status', '?')}")


def describe_network_error(exc: BaseException) -> str:
    """Why the API server could not be reached, from the root cause under urllib3's wrappers."""
    import urllib3.exceptions as u3

    seen = exc
    for _ in range(5):  # unwrap MaxRetryError / ProtocolError to the root cause
        reason = getattr(seen, "reason", None)
        if isinstance(reason, BaseException):
            seen = reason
            continue
        break
    text = str(seen)
    # order matters: urllib3 2 makes NewConnectionError (refused, unreachable) a subclass of ConnectTimeoutError
    if isinstance(seen, u3.NameResolutionError) or "Name or service not known" in text or "resolve" in text.lower():
        return "the host name does not resolve"
    if isinstance(seen, ConnectionRefusedError) or "refused" in text.lower():
        return "connection refused (nothing listens on that address)"
    if isinstance(seen, u3.SSLError) or "CERTIFICATE_VERIFY_FAILED" in text or "SSL" in type(seen).__name__:
        return f"TLS handshake failed ({tls_text(text)})"
    if isinstance(seen, (u3.ConnectTimeoutError, u3.ReadTimeoutError, TimeoutError)) or "timed out" in text.lower():
        return f"no answer within {_timeout_text(exc)}"
    if isinstance(seen, (u3.NewConnectionError, OSError)):
        return f"cannot connect ({short(text)})"
    return f"{type(seen).__name__}: {short(seen)}"


def _timeout_text(exc: BaseException) -> str:
    match = re.search(r"timeout=([0-9.]+)", str(exc))
    return f"{match.group(1)} s" if match else "the connect timeout"


def tls_text(text: str) -> str:
    """The certificate-verify reason out of an SSL error's text, else the text shortened."""
    match = re.search(r"certificate verify failed: ([^(\]]+)", text)
    if match:
        return "certificate verify failed: " + match.group(1).strip().rstrip(" ,")
    return short(text)
