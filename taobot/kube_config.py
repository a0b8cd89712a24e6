"""Loading a Kubernetes identity (`taobot.kube_identity`) into a private ApiClient.

The ApiClient gets a configuration of its own (the client library's global default is never
touched) and makes one attempt per request (no retries), so an unreachable server fails in
about the connect timeout instead of hanging in urllib3's retry loop.

An uploaded kubeconfig is loaded in memory: the library's `KubeConfigLoader` reads its plain
fields, its CA goes to the client as data, and a client certificate and key through memfd
files that exist only in this process's memory (the library would write `*-data` fields to
temporary files on disk). It was checked before (`taobot.kube_upload`): no exec plugin, no
auth provider, no file path.

Loading a kubeconfig context from a file (an operator profile, or a person's own machine) may
run an exec credential plugin (aws, gcloud), which the library runs without a timeout; it
runs in a daemon thread here and is abandoned after `load_limit` seconds.

Every credential value met while loading (tokens, passwords, client keys, exec plugin env
values, the service account token) is collected into `KubeClient.secrets`, so callers can
redact every text they show; `KubeConfigUnusable` messages are redacted already.
"""

from __future__ import annotations

import base64
import copy
import os
import shlex
import threading
from collections.abc import Mapping
from pathlib import Path

import yaml

from taobot import kube_identity as where  # the in-cluster file paths, read at call time (tests move them)
from taobot.config import PlatformSettings
from taobot.kube_identity import (
    DEFAULT_KUBECONFIG,
    NO_IDENTITY,
    SECRET_KEYS,
    Identity,
    KubeClient,
    KubeConfigUnusable,
    check_namespace,
    identity_of,
    load_limit,
    redact,
    short,
)
from taobot.kube_upload import DATA_FIELDS, UploadedKubeconfig, UploadRefused, read_uploaded_kubeconfig

# --------------------------------------------------------------------------- building the client


def load_client(credentials: Mapping[str, str], settings: PlatformSettings) -> KubeClient:
    """The private ApiClient for these credentials and the bot's settings.

    Raises KubeConfigUnusable (redacted) when no client may or can be built. The caller closes the client.
    """
    secrets: set[str] = set()
    content = credentials.get("KUBECONFIG_CONTENT")
    try:
        identity = identity_of(credentials, settings)
        check_namespace(credentials, settings)
        return _load(identity, settings, secrets)
    except KubeConfigUnusable as exc:
        upload = _quiet_upload(content) if content else None
        if upload is not None:
            secrets |= upload.secrets
        raise KubeConfigUnusable(redact(exc.detail, secrets), redact(exc.remediation, secrets)) from None


def _quiet_upload(content: str) -> UploadedKubeconfig | None:
    try:
        return read_uploaded_kubeconfig(content)
    except UploadRefused:
        return None


def _private_configuration():
    from kubernetes import client as k8s

    cfg = type.__call__(k8s.Configuration)  # a private configuration, never the library's global default
    cfg.retries = 0  # one attempt: a preflight must not hang in retries
    return cfg


def _load(identity: Identity, settings: PlatformSettings, secrets: set[str]) -> KubeClient:
    if identity.upload is not None:
        return _from_upload(identity.upload, secrets)
    profile = identity.profile
    if profile is not None and profile.in_cluster:
        if not settings.in_cluster:
            raise KubeConfigUnusable(
                f"cluster profile `{profile.name}` uses the bot's in-cluster service account, but the bot does not run "
                "inside a cluster",
                "Ask the operator to fix the profile, or choose another one.",
            )
        return _in_cluster(
            settings, secrets, f"cluster profile `{profile.name}` (the bot's in-cluster service account)"
        )
    paths = [str(Path(p).expanduser()) for p in (identity.paths or "").split(os.pathsep) if p]
    existing = [p for p in paths if os.path.isfile(p)]
    if profile is not None and not existing:
        raise KubeConfigUnusable(
            f"cluster profile `{profile.name}`'s kubeconfig is missing on the bot's host",
            "Tell the operator: the profile's `kubeconfig` must name a file the bot can read.",
        )
    if not existing and identity.kind == "path":
        missing = ", ".join(f"`{p}`" for p in paths)
        raise KubeConfigUnusable(
            f"kubeconfig {missing} (from KUBECONFIG) does not exist on this machine",
            "Point KUBECONFIG at your kubeconfig file (e.g. the one `aws eks update-kubeconfig` or your cluster's setup "
            "command wrote), or clear it to use the default kubeconfig / in-cluster account.",
        )
    if not existing:  # on the person's machine, no kubeconfig anywhere: the in-cluster service account, in a Pod
        first = paths[0] if paths else DEFAULT_KUBECONFIG
        if identity.context:
            raise KubeConfigUnusable(
                f"TAO_K8S_CONTEXT is `{identity.context}` but there is no kubeconfig (`{first}` does not exist)",
                "Set KUBECONFIG to the kubeconfig that defines this context, or clear TAO_K8S_CONTEXT to use the "
                "in-cluster service account.",
            )
        if not settings.in_cluster:
            raise KubeConfigUnusable(
                f"no Kubernetes configuration: `{first}` does not exist and this does not run inside a cluster "
                "(no in-cluster service account)",
                "Set KUBECONFIG to the path of your kubeconfig, or run in the cluster with a service account.",
            )
        return _in_cluster(settings, secrets, "in-cluster service account")
    return _from_files(identity, existing, settings, secrets)


def _from_files(identity: Identity, existing: list[str], settings: PlatformSettings, secrets: set[str]) -> KubeClient:
    from kubernetes import config as k8s_config
    from kubernetes.config.config_exception import ConfigException

    profile = identity.profile
    # a profile's kubeconfig is the operator's: its path is not shown to people, the profile's name is
    shown = f"of cluster profile `{profile.name}`" if profile else f"`{os.pathsep.join(existing)}`"
    origin = "" if profile else f" ({identity.origin})"
    fix = "Tell the operator about the profile's kubeconfig. " if profile else ""
    config_file = os.pathsep.join(existing)
    try:
        contexts, active = k8s_config.list_kube_config_contexts(config_file=config_file)
    except ConfigException as exc:
        _collect_file_secrets(secrets, existing)
        raise KubeConfigUnusable(
            f"kubeconfig {shown}{origin} has no usable contexts: {short(exc)}",
            fix + "Regenerate the kubeconfig (`kubectl config get-contexts` must list a context).",
        ) from None
    except Exception as exc:  # unreadable or not YAML
        raise KubeConfigUnusable(
            f"kubeconfig {shown}{origin} cannot be read: {type(exc).__name__}",
            fix + "Fix or regenerate the kubeconfig file; `kubectl config view` shows what is wrong with it.",
        ) from None
    _collect_file_secrets(secrets, existing)
    names = [c.get("name") for c in contexts or [] if isinstance(c, dict)]
    listed = ", ".join(f"`{n}`" for n in names) or "none"
    context = identity.context
    if context and context not in names:
        raise KubeConfigUnusable(
            f"context `{context}` is not in kubeconfig {shown}" + ("" if profile else f"; contexts there: {listed}"),
            fix
            + (
                ""
                if profile
                else f"Set TAO_K8S_CONTEXT to one of {listed} (`kubectl config get-contexts` lists them), or clear it "
                "to use the kubeconfig's current context."
            ),
        )
    if not context and not active:
        raise KubeConfigUnusable(
            f"kubeconfig {shown} has no current context" + ("" if profile else f"; contexts there: {listed}"),
            fix
            + ("" if profile else f"Set TAO_K8S_CONTEXT to one of {listed}, or run `kubectl config use-context NAME`."),
        )
    use = context or active.get("name")
    limit = load_limit(settings)
    cfg = _private_configuration()
    try:
        api = _bounded(
            limit,
            lambda: k8s_config.new_client_from_config(
                config_file=config_file, context=use, persist_config=False, client_configuration=cfg
            ),
        )
    except TimeoutError:
        raise KubeConfigUnusable(
            f"loading the credentials of context `{use}` in kubeconfig {shown} did not finish within {limit:.0f} s "
            "(its exec credential plugin hangs)",
            fix + "Run the context's exec plugin by hand (`kubectl get --raw /version --context "
            f"{shlex.quote(use)}` with the same kubeconfig) and fix what it waits for, e.g. an interactive login or SSO.",
        ) from None
    except ConfigException as exc:
        raise KubeConfigUnusable(
            f"context `{use}` in kubeconfig {shown} is unusable: {short(exc)}",
            fix + "Fix the context's cluster and user entries (`kubectl config view --minify --context "
            f"{shlex.quote(use)}` shows them), or regenerate the kubeconfig.",
        ) from None
    except Exception as exc:  # e.g. an exec credential plugin that is not installed
        raise KubeConfigUnusable(
            f"context `{use}` in kubeconfig {shown} could not be loaded: {type(exc).__name__}: {short(exc)}",
            fix + "Check the context's user entry (an exec plugin such as `aws` or `gke-gcloud-auth-plugin` must be "
            "installed where taobot runs), or regenerate the kubeconfig.",
        ) from None
    _collect_config_secrets(secrets, cfg)
    source = f"cluster profile `{profile.name}`" if profile else f"kubeconfig `{config_file}`{origin}"
    return KubeClient(api, cfg.host, f"{source}, context `{use}`", use, frozenset(secrets))


def _from_upload(upload: UploadedKubeconfig, secrets: set[str]) -> KubeClient:
    """The uploaded kubeconfig, in memory: the library's loader for the plain fields, the `*-data` fields set here."""
    from kubernetes import client as k8s
    from kubernetes.config.config_exception import ConfigException
    from kubernetes.config.kube_config import KubeConfigLoader

    from taobot.secrets import REDACTOR

    secrets |= upload.secrets
    for value in upload.secrets:  # the person's token or key never shows in any text, after a restart too
        REDACTOR.add(value)
    doc = yaml.safe_load(upload.text)
    plain = copy.deepcopy(doc)
    for entry in plain["clusters"] + plain["users"]:
        for body in (entry.get("cluster"), entry.get("user")):
            for name in DATA_FIELDS:
                (body or {}).pop(name, None)
    cfg = _private_configuration()
    try:
        KubeConfigLoader(config_dict=plain, active_context=upload.context).load_and_set(cfg)
    except (ConfigException, ValueError, KeyError) as exc:
        raise KubeConfigUnusable(f"your uploaded kubeconfig cannot be loaded: {short(exc)}", NO_IDENTITY) from None
    cluster, user = doc["clusters"][0]["cluster"], doc["users"][0]["user"]
    if cluster.get("certificate-authority-data"):
        cfg.ssl_ca_cert = None
        cfg.ca_cert_data = base64.b64decode(cluster["certificate-authority-data"]).decode("utf-8", "replace")
    fds: list[int] = []
    if user.get("client-certificate-data"):
        cert = base64.b64decode(user["client-certificate-data"])
        key = base64.b64decode(user["client-key-data"])
        cfg.cert_file, cfg.key_file = _memory_file(cert, "cert", fds), _memory_file(key, "key", fds)
    _collect_config_secrets(secrets, cfg)
    api = k8s.ApiClient(configuration=cfg)
    return KubeClient(
        api,
        cfg.host,
        f"your uploaded kubeconfig, context `{upload.context}`",
        upload.context,
        frozenset(secrets),
        tuple(fds),
    )


def _memory_file(data: bytes, name: str, fds: list[int]) -> str:
    """A path to `data` that exists only in this process's memory (a memfd), for TLS code that wants a file."""
    fd = os.memfd_create(f"taobot-kube-{name}", os.MFD_CLOEXEC)
    fds.append(fd)
    os.write(fd, data)
    return f"/proc/{os.getpid()}/fd/{fd}"


def _in_cluster(settings: PlatformSettings, secrets: set[str], source: str) -> KubeClient:
    from kubernetes import client as k8s
    from kubernetes.config.config_exception import ConfigException
    from kubernetes.config.incluster_config import InClusterConfigLoader

    cfg = _private_configuration()
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
            token_filename=where.INCLUSTER_TOKEN_FILE, cert_filename=where.INCLUSTER_CA_FILE, environ=environ
        ).load_and_set(cfg)
    except (ConfigException, OSError, ValueError) as exc:
        raise KubeConfigUnusable(
            f"in-cluster service account configuration is unusable: {short(exc)}",
            "Mount the service account token (automountServiceAccountToken: true) or set KUBECONFIG.",
        ) from None
    _collect_config_secrets(secrets, cfg)
    api = k8s.ApiClient(configuration=cfg)
    return KubeClient(api, cfg.host, source, "", frozenset(secrets))


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


# --------------------------------------------------------------------------- credential values, for redaction


def _collect_file_secrets(secrets: set[str], paths: list[str]) -> None:
    """Every credential value in the kubeconfig files' `users`, so no text can carry one."""

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
        token = Path(where.INCLUSTER_TOKEN_FILE).read_text().strip()
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
