"""Talking to a kube-apiserver: one private ApiClient, and readable text for what went wrong.

`load_client` resolves the configuration the way preflight and the backend
both need it: the KUBECONFIG credential, else the bot's KUBECONFIG, else
~/.kube/config, else (in a Pod) the in-cluster service account, with
TAO_K8S_CONTEXT choosing the context. The ApiClient gets a configuration of
its own (the client library's global default is never touched) and makes
one attempt per request (no retries), so an unreachable server fails in
about the connect timeout instead of hanging in urllib3's retry loop.

Loading a context may run an exec credential plugin (aws, gcloud), which
the library runs without a timeout; it runs in a daemon thread here and is
abandoned after `load_limit` seconds.

Every credential value found in the kubeconfig (tokens, passwords, client
keys, exec plugin env values) or in the service account token is collected
into `KubeClient.secrets`, so callers can redact every text they show;
`KubeConfigUnusable` messages are redacted already.

`api_message` and `describe_network_error` turn an ApiException or a
urllib3 / socket error into one line for a person: the API server's own
message, or "connection refused", "TLS handshake failed (...)", "no answer
within 5 s".
"""

from __future__ import annotations

import json
import os
import re
import shlex
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from taobot.config import PlatformSettings
from taobot.errors import TaobotError

DEFAULT_NAMESPACE = "default"
DEFAULT_KUBECONFIG = "~/.kube/config"
# where a Pod's service account credentials are mounted (module-level so tests can point elsewhere)
INCLUSTER_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
INCLUSTER_TOKEN_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/token"
INCLUSTER_CA_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"

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

    def close(self) -> None:
        try:
            self.api.close()
        except Exception:  # noqa: BLE001 - closing a pool must not turn a result into a crash
            pass


class KubeConfigUnusable(TaobotError):
    """No ApiClient can be built from this configuration. `detail` says why, `remediation` what to change;
    both are redacted."""

    def __init__(self, detail: str, remediation: str = "") -> None:
        super().__init__(detail, remediation=remediation)
        self.detail = detail
        self.remediation = remediation


# --------------------------------------------------------------------------- where the configuration is


def kubeconfig_of(credentials: Mapping[str, str], settings: PlatformSettings) -> str:
    """The kubeconfig path list: the KUBECONFIG credential, else the bot's KUBECONFIG, else ~/.kube/config."""
    return credentials.get("KUBECONFIG") or settings.kubeconfig or DEFAULT_KUBECONFIG


def namespace_for(credentials: Mapping[str, str], settings: PlatformSettings) -> str:
    """TAO_K8S_NAMESPACE; else, in a cluster without a kubeconfig, the pod's own namespace; else `default`."""
    named = credentials.get("TAO_K8S_NAMESPACE")
    if named:
        return named
    if not credentials.get("KUBECONFIG") and settings.in_cluster:
        try:
            with open(INCLUSTER_NAMESPACE_FILE, encoding="utf-8") as fh:
                own = fh.read().strip()
            if own:
                return own
        except OSError:
            pass
    return DEFAULT_NAMESPACE


def load_limit(settings: PlatformSettings) -> float:
    """How long loading a context may take: exec credential plugins (aws, gcloud) run here, without a timeout."""
    return max(10.0, 3 * float(settings.connect_timeout_s))


# --------------------------------------------------------------------------- building the client


def load_client(credentials: Mapping[str, str], settings: PlatformSettings) -> KubeClient:
    """The private ApiClient for these credentials (KUBECONFIG, TAO_K8S_CONTEXT) and the bot's settings.

    Raises KubeConfigUnusable (redacted) when no client can be built. The caller closes the client.
    """
    from kubernetes import client as k8s

    secrets: set[str] = set()
    try:
        return _load(credentials, settings, secrets, k8s)
    except KubeConfigUnusable as exc:
        raise KubeConfigUnusable(redact(exc.detail, secrets), redact(exc.remediation, secrets)) from None


def _load(credentials: Mapping[str, str], settings: PlatformSettings, secrets: set[str], k8s) -> KubeClient:
    from kubernetes import config as k8s_config
    from kubernetes.config.config_exception import ConfigException

    given = credentials.get("KUBECONFIG") or None
    context = credentials.get("TAO_K8S_CONTEXT") or None
    if given:
        spec, origin = given, "KUBECONFIG"
    else:
        spec, origin = settings.kubeconfig or DEFAULT_KUBECONFIG, "default location"
    paths = [str(Path(p).expanduser()) for p in spec.split(os.pathsep) if p]
    existing = [p for p in paths if os.path.isfile(p)]

    if not existing and given:
        missing = ", ".join(f"`{p}`" for p in paths)
        raise KubeConfigUnusable(
            f"kubeconfig {missing} (from KUBECONFIG) does not exist on the bot's host",
            "Point KUBECONFIG at the kubeconfig file on the bot's host (e.g. the one `aws eks update-kubeconfig` or "
            "your cluster's setup command wrote), or clear it to use the default kubeconfig / in-cluster account.",
        )

    cfg = type.__call__(k8s.Configuration)  # a private configuration, never the library's global default
    cfg.retries = 0  # one attempt: a preflight must not hang in retries

    if not existing:  # no kubeconfig anywhere: the in-cluster service account, if this runs in a Pod
        first = paths[0] if paths else DEFAULT_KUBECONFIG
        if context:
            raise KubeConfigUnusable(
                f"TAO_K8S_CONTEXT is `{context}` but there is no kubeconfig (`{first}` does not exist)",
                "Set KUBECONFIG to the kubeconfig that defines this context, or clear TAO_K8S_CONTEXT to use the "
                "in-cluster service account.",
            )
        if not settings.in_cluster:
            raise KubeConfigUnusable(
                f"no Kubernetes configuration: `{first}` does not exist and the bot "
                "does not run inside a cluster (no in-cluster service account)",
                "Set KUBECONFIG to the path of a kubeconfig on the bot's host, or run the bot in the cluster with a "
                "service account.",
            )
        return _in_cluster(settings, cfg, secrets, k8s)

    shown = os.pathsep.join(existing)
    try:
        contexts, active = k8s_config.list_kube_config_contexts(config_file=shown)
    except ConfigException as exc:
        _collect_file_secrets(secrets, existing)
        raise KubeConfigUnusable(
            f"kubeconfig `{shown}` ({origin}) has no usable contexts: {short(exc)}",
            "Regenerate the kubeconfig with your cluster's setup command (`kubectl config get-contexts` must list a context).",
        ) from None
    except Exception as exc:  # unreadable or not YAML
        raise KubeConfigUnusable(
            f"kubeconfig `{shown}` ({origin}) cannot be read: {type(exc).__name__}",
            "Fix or regenerate the kubeconfig file; `kubectl config view` shows what is wrong with it.",
        ) from None
    _collect_file_secrets(secrets, existing)
    names = [c.get("name") for c in contexts or [] if isinstance(c, dict)]
    listed = ", ".join(f"`{n}`" for n in names) or "none"
    if context and context not in names:
        raise KubeConfigUnusable(
            f"context `{context}` is not in kubeconfig `{shown}`; contexts there: {listed}",
            f"Set TAO_K8S_CONTEXT to one of {listed} (`kubectl config get-contexts` lists them), or clear it to use "
            "the kubeconfig's current context.",
        )
    if not context and not active:
        raise KubeConfigUnusable(
            f"kubeconfig `{shown}` has no current context; contexts there: {listed}",
            f"Set TAO_K8S_CONTEXT to one of {listed}, or run `kubectl config use-context NAME`.",
        )
    use = context or active.get("name")
    limit = load_limit(settings)
    try:
        api = _bounded(
            limit,
            lambda: k8s_config.new_client_from_config(
                config_file=shown, context=use, persist_config=False, client_configuration=cfg
            ),
        )
    except TimeoutError:
        raise KubeConfigUnusable(
            f"loading the credentials of context `{use}` in kubeconfig `{shown}` did not finish within {limit:.0f} s "
            "(its exec credential plugin hangs)",
            "Run the context's exec plugin by hand (`kubectl get --raw /version --context "
            f"{shlex.quote(use)}` with the same kubeconfig) and fix what it waits for, e.g. an interactive login or SSO.",
        ) from None
    except ConfigException as exc:
        raise KubeConfigUnusable(
            f"context `{use}` in kubeconfig `{shown}` is unusable: {short(exc)}",
            "Fix the context's cluster and user entries (`kubectl config view --minify --context "
            f"{shlex.quote(use)}` shows them), or regenerate the kubeconfig.",
        ) from None
    except Exception as exc:  # e.g. an exec credential plugin that is not installed
        raise KubeConfigUnusable(
            f"context `{use}` in kubeconfig `{shown}` could not be loaded: {type(exc).__name__}: {short(exc)}",
            "Check the context's user entry (an exec plugin such as `aws` or `gke-gcloud-auth-plugin` must be installed "
            "on the bot's host), or regenerate the kubeconfig.",
        ) from None
    _collect_config_secrets(secrets, cfg)
    return KubeClient(api, cfg.host, f"kubeconfig `{shown}` ({origin}), context `{use}`", use, frozenset(secrets))


def _in_cluster(settings: PlatformSettings, cfg, secrets: set[str], k8s) -> KubeClient:
    from kubernetes.config.config_exception import ConfigException
    from kubernetes.config.incluster_config import InClusterConfigLoader

    # the loader reads the service address from `environ`: give it the bot's settings, not the process environment
    environ = {
        name: value
        for name, value in (
            ("KUBERNETES_SERVICE_HOST", settings.kubernetes_service_host),
            ("KUBERNETES_SERVICE_PORT", settings.kubernetes_service_port),
        )
        if value is not None
    }
    try:
        _collect_incluster_secret(secrets)
        InClusterConfigLoader(
            token_filename=INCLUSTER_TOKEN_FILE, cert_filename=INCLUSTER_CA_FILE, environ=environ
        ).load_and_set(cfg)
    except (ConfigException, OSError, ValueError) as exc:
        raise KubeConfigUnusable(
            f"in-cluster service account configuration is unusable: {short(exc)}",
            "Mount the service account token (automountServiceAccountToken: true) or set KUBECONFIG.",
        ) from None
    _collect_config_secrets(secrets, cfg)
    api = k8s.ApiClient(configuration=cfg)
    return KubeClient(api, cfg.host, "in-cluster service account", "", frozenset(secrets))


def _bounded(limit: float, fn):
    """fn() in a daemon thread; TimeoutError if it is not done within `limit` seconds (the thread is abandoned)."""
    box: dict = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=target, name="k8s-preflight-config", daemon=True)
    worker.start()
    worker.join(limit)
    if worker.is_alive():
        raise TimeoutError
    if "error" in box:
        raise box["error"]
    return box["value"]


class ClientCache:
    """Loaded clients per (kubeconfig, context), so repeated calls share one connection pool per identity.

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
        """The cached client for this kubeconfig + context; raises KubeConfigUnusable when it cannot be built."""
        key = self._key(credentials, context)
        with self._lock:
            client = self._clients.get(key)
            if client is not None:
                return client
        client = load_client(
            {"KUBECONFIG": credentials.get("KUBECONFIG") or "", "TAO_K8S_CONTEXT": context}, self.settings
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


# --------------------------------------------------------------------------- credential values, for redaction


def _collect_file_secrets(secrets: set[str], paths: list[str]) -> None:
    """Every credential value in the kubeconfig files' `users`, so no text can carry one."""
    import yaml

    def walk(node, key=None):
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, k)
        elif isinstance(node, list):
            for v in node:
                walk(v, key)
        elif isinstance(node, str) and key in SECRET_KEYS and len(node) >= 4:
            secrets.add(node)

    for p in paths:
        try:
            doc = yaml.safe_load(Path(p).read_text())
        except Exception:
            continue
        if isinstance(doc, dict):
            for user in doc.get("users") or []:
                if isinstance(user, dict):
                    walk(user.get("user"))
                    env = (
                        ((user.get("user") or {}).get("exec") or {}).get("env")
                        if isinstance(user.get("user"), dict)
                        else None
                    )
                    for item in env or []:
                        if isinstance(item, dict) and isinstance(item.get("value"), str) and len(item["value"]) >= 4:
                            secrets.add(item["value"])


def _collect_incluster_secret(secrets: set[str]) -> None:
    try:
        token = Path(INCLUSTER_TOKEN_FILE).read_text().strip()
    except OSError:
        return
    if token:
        secrets.add(token)


def _collect_config_secrets(secrets: set[str], cfg) -> None:
    for value in (cfg.api_key or {}).values():
        if isinstance(value, str) and len(value) >= 4:
            secrets.add(value)
            secrets.add(value.removeprefix("Bearer ").strip())
    for value in (cfg.password, getattr(cfg, "access_token", None)):
        if isinstance(value, str) and len(value) >= 4:
            secrets.add(value)


def redact(text: str, secrets) -> str:
    """`text` with every secret value (longest first) replaced by ***."""
    for s in sorted(secrets, key=len, reverse=True):
        text = text.replace(s, "***")
    return text


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


def short(value: object, limit: int = 300) -> str:
    """`value` as one line of at most `limit` characters."""
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
