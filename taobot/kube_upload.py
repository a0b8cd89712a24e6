"""A person's uploaded kubeconfig: checked, cut down to the one context taobot uses, never a reach into the bot's host.

A kubeconfig can name files (`certificate-authority`, `client-certificate`, `client-key`,
`tokenFile`) and commands (`exec`, `auth-provider`) that the client library would read or
run on the bot's host. An uploaded one may do neither: only the `*-data` and `token` forms
are accepted, each refusal names the field, and the server must be https.

`read_uploaded_kubeconfig` keeps only the context taobot will use (the only one, else
`current-context`), its cluster and its user, with the fields listed here; everything else
is dropped and the notes say so. The result's `text` is what taobot stores (encrypted) and
loads in memory (`taobot.kube_config`). Pure: YAML and base64 only.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

import yaml

MAX_UPLOAD_BYTES = 256 * 1024  # kubeconfigs with embedded certificates are a few KB
# fields that make the client library read a file or run a program on the bot's host
FILE_FIELDS = ("certificate-authority", "client-certificate", "client-key", "tokenFile")
PROGRAM_FIELDS = ("exec", "auth-provider")
CLUSTER_FIELDS = ("server", "certificate-authority-data", "tls-server-name", "insecure-skip-tls-verify")
USER_FIELDS = ("token", "client-certificate-data", "client-key-data")
DATA_FIELDS = ("certificate-authority-data", "client-certificate-data", "client-key-data")
FLATTEN = "`kubectl config view --minify --flatten --raw > kubeconfig.yaml`"


class UploadRefused(ValueError):
    """The upload cannot be used; the message says which field and what is accepted instead."""


@dataclass(frozen=True)
class UploadedKubeconfig:
    text: str  # the cut-down kubeconfig (YAML): one context, its cluster and user
    context: str
    cluster: str
    user: str
    server: str
    namespace: str | None
    auth: str  # "token" or "client certificate"
    notes: tuple[str, ...] = ()  # what was dropped, for the person

    @property
    def secrets(self) -> frozenset[str]:
        """The credential values in it, for redaction."""
        doc = yaml.safe_load(self.text)
        user = doc["users"][0]["user"]
        found = {v for k, v in user.items() if k in ("token", "client-key-data") and isinstance(v, str)}
        key = user.get("client-key-data")
        if isinstance(key, str):
            found.add(base64.b64decode(key).decode("utf-8", "replace").strip())
        return frozenset(s for s in found if len(s) >= 4)

    def summary(self) -> str:
        """One line for the thread: no credential, only where it points."""
        ns = f", namespace `{self.namespace}`" if self.namespace else ""
        return f"context `{self.context}` → `{self.server}` as user `{self.user}` ({self.auth}{ns})"


def _refuse(where: str, field: str, why: str) -> UploadRefused:
    return UploadRefused(f"`{field}` in {where}: {why}")


def _named(doc: dict, kind: str, name: str) -> dict:
    """The entry `name` of the kubeconfig's `kind` list (clusters, users, contexts)."""
    for entry in doc.get(kind) or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            return entry
    raise UploadRefused(f"the kubeconfig names {kind[:-1]} `{name}` but has no such entry under `{kind}`")


def _body(entry: dict, key: str, where: str) -> dict:
    body = entry.get(key)
    if not isinstance(body, dict):
        raise UploadRefused(f"{where} has no `{key}:` mapping")
    return body


def _check_data(where: str, field: str, value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        raise _refuse(where, field, "must be base64 text")
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _refuse(where, field, "is not valid base64") from None
    if b"-----BEGIN" not in decoded:
        raise _refuse(where, field, "does not decode to a PEM block (-----BEGIN …)")


def read_uploaded_kubeconfig(text: str) -> UploadedKubeconfig:
    """The usable part of an uploaded kubeconfig; raises UploadRefused saying what is wrong and what is accepted."""
    if len(text.encode("utf-8", "replace")) > MAX_UPLOAD_BYTES:
        raise UploadRefused(f"the file is larger than {MAX_UPLOAD_BYTES // 1024} KB; a kubeconfig is a few KB")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        raise UploadRefused(f"the file is not YAML{at}; upload the kubeconfig file itself") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("contexts"), list) or not doc["contexts"]:
        raise UploadRefused("the file is not a kubeconfig: it has no `contexts:` list")
    notes: list[str] = []
    names = [c.get("name") for c in doc["contexts"] if isinstance(c, dict)]
    current = doc.get("current-context")
    if len(names) == 1:
        use = names[0]
    elif not current:
        listed = ", ".join(f"`{n}`" for n in names)
        raise UploadRefused(
            f"the kubeconfig has {len(names)} contexts ({listed}) and no `current-context`; "
            f"upload one context: {FLATTEN} after `kubectl config use-context NAME`"
        )
    else:
        use = current
        notes.append(f"the kubeconfig has {len(names)} contexts; taobot uses its current-context `{use}` only")
    context = _body(_named(doc, "contexts", use), "context", f"context `{use}`")
    cluster_name, user_name = context.get("cluster"), context.get("user")
    if not cluster_name or not user_name:
        raise UploadRefused(f"context `{use}` must name a `cluster` and a `user`")
    cluster = _body(_named(doc, "clusters", cluster_name), "cluster", f"cluster `{cluster_name}`")
    user = _body(_named(doc, "users", user_name), "user", f"user `{user_name}`")
    where_c, where_u = f"cluster `{cluster_name}`", f"user `{user_name}`"

    for field in PROGRAM_FIELDS:
        if field in user:
            raise _refuse(
                where_u,
                field,
                "runs a program on the bot's host, which an uploaded kubeconfig may not do; upload one whose user "
                "has a `token` or `client-certificate-data` + `client-key-data` (e.g. a service account token)",
            )
    for where, body in ((where_c, cluster), (where_u, user)):
        for field in FILE_FIELDS:
            if field in body:
                data = "tokenFile" if field == "tokenFile" else f"{field}-data"
                instead = "`token`" if field == "tokenFile" else f"`{data}`"
                raise _refuse(
                    where,
                    field,
                    f"names a file, which would be read on the bot's host; embed it as {instead} instead ({FLATTEN})",
                )
    if "username" in user or "password" in user:
        raise _refuse(where_u, "username/password", "basic auth is not accepted; use a token or a client certificate")

    server = cluster.get("server")
    if not isinstance(server, str) or not server.startswith("https://"):
        raise _refuse(where_c, "server", f"must be an https:// address of the API server (got {server!r})")
    kept_cluster = {k: cluster[k] for k in CLUSTER_FIELDS if k in cluster}
    kept_user = {k: user[k] for k in USER_FIELDS if k in user}
    for where, body in ((where_c, kept_cluster), (where_u, kept_user)):
        for field in DATA_FIELDS:
            if field in body:
                _check_data(where, field, body[field])
    if kept_user.get("token") is not None and (not isinstance(kept_user["token"], str) or not kept_user["token"]):
        raise _refuse(where_u, "token", "must be the token text")
    has_cert = "client-certificate-data" in kept_user, "client-key-data" in kept_user
    if any(has_cert) and not all(has_cert):
        missing = "client-key-data" if has_cert[0] else "client-certificate-data"
        raise _refuse(
            where_u, missing, "a client certificate needs both `client-certificate-data` and `client-key-data`"
        )
    if not kept_user.get("token") and not all(has_cert):
        raise UploadRefused(
            f"{where_u} has no credential taobot accepts: give it a `token` or `client-certificate-data` + "
            f"`client-key-data` ({FLATTEN} embeds them)"
        )
    dropped = sorted((set(cluster) - set(CLUSTER_FIELDS)) | (set(user) - set(USER_FIELDS)))
    if dropped:
        notes.append("ignored: " + ", ".join(f"`{d}`" for d in dropped))
    namespace = context.get("namespace") if isinstance(context.get("namespace"), str) else None
    minimal = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster_name, "cluster": kept_cluster}],
        "users": [{"name": user_name, "user": kept_user}],
        "contexts": [
            {
                "name": use,
                "context": {
                    "cluster": cluster_name,
                    "user": user_name,
                    **({"namespace": namespace} if namespace else {}),
                },
            }
        ],
        "current-context": use,
    }
    return UploadedKubeconfig(
        text=yaml.safe_dump(minimal, sort_keys=False),
        context=use,
        cluster=cluster_name,
        user=user_name,
        server=server,
        namespace=namespace,
        auth="token" if kept_user.get("token") else "client certificate",
        notes=tuple(notes),
    )
