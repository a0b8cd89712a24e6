"""Kubernetes RBAC in words: what a denied permission is, and the exact Role and RoleBinding that grant it."""

from __future__ import annotations

import re

from taobot.preflight.base import quote

ROLE_PREFIX = "taobot"
USER_IN_403 = re.compile(r'User "([^"]+)" cannot')


def permission_words(verbs: str, group: str, resource: str, sub: str) -> str:
    res = f"{resource}/{sub}" if sub else resource
    return f"{verbs.replace(',', '/')} {res}" + (f" ({group})" if group else "")


def can_i_resource(group: str, resource: str, sub: str) -> str:
    res = f"{resource}.{group}" if group else resource
    return f"{res} --subresource={sub}" if sub else res


def kubectl_resource(group: str, resource: str, sub: str) -> str:
    res = f"{resource}.{group}" if group else resource
    return f"{res}/{sub}" if sub else res


def subject_flag(user: str | None) -> str:
    if user and user.startswith("system:serviceaccount:"):
        sa_ns, _, sa_name = user[len("system:serviceaccount:") :].partition(":")
        return f"--serviceaccount={quote(f'{sa_ns}:{sa_name}')}"
    if user:
        return f"--user={quote(user)}"
    return "--user=BOT_USER"


def who(user: str | None) -> str:
    return f"`{user}`" if user else "this identity"


def unknown_user_note(user: str | None) -> str:
    if user:
        return ""
    return (
        " Replace BOT_USER with the user the bot's kubeconfig authenticates as (`kubectl auth whoami` on "
        "Kubernetes 1.28+), or use --serviceaccount=NAMESPACE:NAME for a service account."
    )


def role_remediation(ns: str, user: str | None, verb: str, group: str, resource: str, sub: str) -> str:
    """`verb` may be several, comma-separated (kubectl's --verb takes that form)."""
    slug = f"{resource}-{sub}" if sub else resource
    name = f"{ROLE_PREFIX}-{verb.replace(',', '-')}-{slug}"
    return (
        f"A namespace admin grants exactly this with a Role and a RoleBinding:\n"
        f"`kubectl create role {name} --namespace={quote(ns)} --verb={verb} --resource={kubectl_resource(group, resource, sub)}`\n"
        f"`kubectl create rolebinding {name} --namespace={quote(ns)} --role={name} {subject_flag(user)}`"
        + unknown_user_note(user)
    )


def user_from(message: str) -> str | None:
    match = USER_IN_403.search(message or "")
    return match.group(1) if match else None


def anonymous(user: str | None) -> bool:
    return user == "system:anonymous"
