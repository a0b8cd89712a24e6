"""Lepton (DGX Cloud Lepton) preflight: the workspace API answers with this token.

Read-only: two GETs against the workspace-scoped API; nothing is created.

Documented behaviour followed (the official `leptonai` SDK, `leptonai/api/v2`,
and docs.nvidia.com/dgx-cloud/lepton):

* Workspace API base: ``<gateway>/api/v2/workspaces/<workspace_id>``, the
  gateway being ``https://gateway.dgxc-lepton.nvidia.com`` (the SDK's
  ``_get_full_workspace_api_url``; the SDK's own tests use
  ``https://gateway.dgxc-lepton.nvidia.com/api/v2/workspaces/ws1``). The
  workspace is addressed by the URL path, not by a header. The gateway is
  ``PlatformSettings.lepton_api_url``.
* Auth: ``Authorization: Bearer <token>`` (docs "Token": tokens are created
  on the workspace's Settings > Tokens page, default expiry 1 day; the
  workspace id is on Settings > General). The SDK also sends
  ``Origin: <scheme://host of the gateway>`` for DGXC workspaces; so do we.
* ``GET .../workspace`` -> workspace info (``workspace_name``,
  ``workspace_state`` normal|paused|all-pods-terminated|terminated,
  ``workloads.num_jobs`` ...). This is the call `lep workspace login` makes to
  verify a workspace is accessible; the SDK maps 401 to "Unauthorized access
  to the workspace" and 404 to "Workspace not found (a just-created
  workspace can take 10 minutes)".
* ``GET .../dedicated-node-groups`` -> list of node groups
  (``metadata.id/name``, ``status.ready_nodes``). DGX Cloud Lepton jobs run
  on a node group (``spec.affinity.allowed_dedicated_node_groups``), so a
  token that sees none cannot place a job. The request carries no node group
  or resource shape to verify, so only visibility is checked.
* Error bodies are treated as opaque text, as the SDK does (``ClientError:
  <status> <body>``); a JSON ``message`` is quoted when present.

Status mapping: 2xx pass; 401 token refused; 403 token valid but not for this
workspace; 404 unknown workspace; 429/5xx and transport failures are
"unreachable, retriable" (502/503/504 are retried once). Redirects are not
followed, so the token never travels to another host. The token never
appears in any result text, even when a server echoes it back.
"""

from __future__ import annotations

import urllib.parse

from taobot.preflight.base import CheckResult, PreflightRequest
from taobot.rest import RETRY_PAUSE_S, Reply, RestClient, RetryRule, said, scrub

WORKSPACE_ID = "LEPTON_WORKSPACE_ID"
AUTH_TOKEN = "LEPTON_AUTH_TOKEN"
REQUIRED = (WORKSPACE_ID, AUTH_TOKEN)

ACCESS = "lepton.access"
NODE_GROUPS = "lepton.node_groups"
ACCESS_LABEL = "Lepton workspace API"
NODE_GROUPS_LABEL = "Lepton node groups"

EXCERPT_LIMIT = 160
NAMES_SHOWN = 5
USER_AGENT = "taobot-preflight"

TOKEN_FIX = (
    "In the Lepton dashboard open workspace `{ws}` > Settings > Tokens and create a token "
    "(tokens expire after 1 day unless you pick a longer expiry), then press *Enter credentials* "
    "and give LEPTON_AUTH_TOKEN."
)
WORKSPACE_FIX = (
    "Check LEPTON_WORKSPACE_ID: copy the id from the dashboard's Settings > General page (or `lep workspace list`)."
)


# --------------------------------------------------------------------------- HTTP


def http_client(
    base_url: str, token: str, timeout: float, secrets: tuple[str, ...], headers: dict[str, str] | None = None
) -> RestClient:
    """The preflight's client (Brev's preflight uses it too); GETs only.

    A 502/503/504 is asked once more after RETRY_PAUSE_S; a 429 is reported at
    once (a preflight answers now rather than wait).
    """
    return RestClient(
        base_url,
        token,
        timeout,
        headers=headers,
        secrets=secrets,
        user_agent=USER_AGENT,
        retry=RetryRule(rate_limited=False, pause_s=RETRY_PAUSE_S),
    )


def excerpt(answer: Reply, secrets: tuple[str, ...]) -> str:
    """A short, single-line, secret-free description of an error body."""
    return said(answer, secrets, limit=EXCERPT_LIMIT)


def unreachable(
    check: str, label: str, service: str, answer: Reply, secrets: tuple[str, ...], fix: str = ""
) -> CheckResult | None:
    """The failed result for a transport failure, 429 or 5xx; None for any other answer."""
    if answer.status is None:
        what = answer.failure
    elif answer.status == 429:
        wait = f"; it asks to wait {answer.retry_after} s" if answer.retry_after else ""
        what = f"HTTP 429 (rate limited{wait})"
    elif answer.status >= 500:
        said = excerpt(answer, secrets)
        what = f"HTTP {answer.status}" + (f" ({said})" if said else "")
    else:
        return None
    return CheckResult(
        check,
        label,
        False,
        f"{service} at {answer.url} is unreachable: {what}. This is not a credential problem.",
        "This is retriable: run preflight again in a few minutes. "
        + (fix or f"If it persists, check that this host can reach {urllib.parse.urlsplit(answer.url).netloc}."),
    )


def origin_of(base_url: str) -> str:
    parts = urllib.parse.urlsplit(base_url)
    return f"{parts.scheme}://{parts.netloc}"


# --------------------------------------------------------------------------- the check


def check(request: PreflightRequest) -> list[CheckResult]:
    missing = [n for n in REQUIRED if not request.cred(n)]
    if missing:
        return [
            CheckResult(
                ACCESS,
                ACCESS_LABEL,
                False,
                "not checked: missing " + ", ".join(missing),
                "Press *Enter credentials* and give " + ", ".join(missing) + ".",
            )
        ]
    ws = request.cred(WORKSPACE_ID).strip()
    token = request.cred(AUTH_TOKEN).strip()
    secrets = (token, request.cred(AUTH_TOKEN))

    if ":" in ws:  # `lep login -c <id>:<token>` credential strings; never echo the part after the colon
        shown = ws.split(":", 1)[0]
        return [
            CheckResult(
                ACCESS,
                ACCESS_LABEL,
                False,
                f"LEPTON_WORKSPACE_ID looks like a `<workspace id>:<token>` credential string (starts with `{shown}`)",
                f"Give only the workspace id (`{shown}`) as LEPTON_WORKSPACE_ID and the token as LEPTON_AUTH_TOKEN.",
            )
        ]
    if not ws or any(c in ws for c in "/?#% \t"):
        return [
            CheckResult(
                ACCESS,
                ACCESS_LABEL,
                False,
                f"LEPTON_WORKSPACE_ID `{scrub(ws, secrets)}` is not a workspace id",
                WORKSPACE_FIX,
            )
        ]

    base = request.settings.lepton_api_url.rstrip("/")
    ws_url = f"{base}/api/v2/workspaces/{urllib.parse.quote(ws, safe='')}"
    client = http_client(ws_url, token, request.settings.http_timeout_s, secrets, {"Origin": origin_of(base)})

    info = client.call("GET", "/workspace")
    access = _access_result(info, ws, secrets)
    if not access.ok:
        return [access]
    groups = client.call("GET", "/dedicated-node-groups")
    return [access, _node_group_result(groups, ws, secrets)]


def _access_result(answer: Reply, ws: str, secrets: tuple[str, ...]) -> CheckResult:
    down = unreachable(ACCESS, ACCESS_LABEL, "The Lepton API", answer, secrets)
    if down:
        return down
    status = answer.status
    said = excerpt(answer, secrets)
    said = f' ("{said}")' if said else ""
    if status == 401:
        return CheckResult(
            ACCESS,
            ACCESS_LABEL,
            False,
            f"Lepton refused LEPTON_AUTH_TOKEN for workspace `{ws}`: HTTP 401{said}; the token is wrong, expired or revoked",
            TOKEN_FIX.format(ws=ws),
        )
    if status == 403:
        return CheckResult(
            ACCESS,
            ACCESS_LABEL,
            False,
            f"Lepton denied access to workspace `{ws}`: HTTP 403{said}; the token is not valid for this workspace",
            WORKSPACE_FIX + " Then create the token inside that same workspace (Settings > Tokens), "
            "press *Enter credentials* and give LEPTON_AUTH_TOKEN.",
        )
    if status == 404:
        return CheckResult(
            ACCESS,
            ACCESS_LABEL,
            False,
            f"Lepton has no workspace `{ws}` at {answer.url}: HTTP 404{said}",
            WORKSPACE_FIX + " A workspace created in the last 10 minutes may not be reachable yet. If the id is "
            "right, check the bot's Lepton API URL setting (default https://gateway.dgxc-lepton.nvidia.com).",
        )
    if status is not None and 300 <= status < 400:
        return CheckResult(
            ACCESS,
            ACCESS_LABEL,
            False,
            f"{answer.url} answered with a redirect (HTTP {status}); not followed, so the token stays on this host",
            "Set the bot's Lepton API URL to the gateway itself (default https://gateway.dgxc-lepton.nvidia.com).",
        )
    if status is None or not 200 <= status < 300:
        return CheckResult(
            ACCESS,
            ACCESS_LABEL,
            False,
            f"Lepton answered HTTP {status}{said} for workspace `{ws}`",
            WORKSPACE_FIX + " If the id and token are right, report this answer to the taobot maintainers.",
        )
    info = answer.body
    if not isinstance(info, dict) or not ({"workspace_name", "workspace_state", "workloads"} & set(info)):
        kind = answer.content_type.split(";")[0] or "an empty body"
        return CheckResult(
            ACCESS,
            ACCESS_LABEL,
            False,
            f"{answer.url} answered HTTP {status} but not with Lepton workspace info (got {kind})",
            "Set the bot's Lepton API URL to the Lepton gateway (default https://gateway.dgxc-lepton.nvidia.com).",
        )
    state = str(info.get("workspace_state") or "normal")
    name = info.get("workspace_name")
    named = f" ({name})" if name and name != ws else ""
    if state.lower() != "normal":
        return CheckResult(
            ACCESS,
            ACCESS_LABEL,
            False,
            f"workspace `{ws}`{named} accepted the token but is `{state}`: it will not start jobs",
            "Resume the workspace in the Lepton dashboard, or ask the workspace admin to, then run preflight again.",
        )
    parts = [f"workspace `{ws}`{named} accepted the token", f"state {state}"]
    workloads = info.get("workloads")
    if isinstance(workloads, dict) and isinstance(workloads.get("num_jobs"), int):
        n = workloads["num_jobs"]
        parts.append(f"{n} job{'s' if n != 1 else ''} in the workspace")
    return CheckResult(ACCESS, ACCESS_LABEL, True, "; ".join(parts))


def _node_group_result(answer: Reply, ws: str, secrets: tuple[str, ...]) -> CheckResult:
    down = unreachable(NODE_GROUPS, NODE_GROUPS_LABEL, "The Lepton API", answer, secrets)
    if down:
        return down
    said = excerpt(answer, secrets)
    said = f' ("{said}")' if said else ""
    if answer.status in (401, 403):
        return CheckResult(
            NODE_GROUPS,
            NODE_GROUPS_LABEL,
            False,
            f"the token may read workspace `{ws}` but not its node groups: HTTP {answer.status}{said}",
            "Ask the workspace admin for a role that can use node groups, or create the token as a user who has one "
            f"(workspace `{ws}` > Settings > Tokens), then press *Enter credentials* and give LEPTON_AUTH_TOKEN.",
        )
    if answer.status is None or not 200 <= answer.status < 300:
        return CheckResult(
            NODE_GROUPS,
            NODE_GROUPS_LABEL,
            False,
            f"listing node groups of workspace `{ws}` answered HTTP {answer.status}{said}",
            "Run preflight again; if this persists, report it to the taobot maintainers.",
        )
    groups = answer.body
    if isinstance(groups, dict):  # tolerate an enveloped list
        groups = next((v for v in groups.values() if isinstance(v, list)), None)
    if not isinstance(groups, list):
        return CheckResult(
            NODE_GROUPS,
            NODE_GROUPS_LABEL,
            False,
            f"{answer.url} did not answer with a list of node groups",
            "Set the bot's Lepton API URL to the Lepton gateway (default https://gateway.dgxc-lepton.nvidia.com).",
        )
    if not groups:
        return CheckResult(
            NODE_GROUPS,
            NODE_GROUPS_LABEL,
            False,
            f"no node group is visible to this token in workspace `{ws}`; a Lepton job must run on one",
            "Ask the workspace admin to give this workspace (and your user) access to a node group, then run preflight again.",
        )
    shown = []
    for g in groups[:NAMES_SHOWN]:
        meta = g.get("metadata", {}) if isinstance(g, dict) else {}
        status = g.get("status", {}) if isinstance(g, dict) else {}
        name = meta.get("name") or meta.get("id") or "?"
        ready = status.get("ready_nodes") if isinstance(status, dict) else None
        shown.append(
            f"`{name}`" + (f" ({ready} ready node{'s' if ready != 1 else ''})" if isinstance(ready, int) else "")
        )
    more = f" and {len(groups) - NAMES_SHOWN} more" if len(groups) > NAMES_SHOWN else ""
    n = len(groups)
    return CheckResult(
        NODE_GROUPS,
        NODE_GROUPS_LABEL,
        True,
        f"{n} node group{'s' if n != 1 else ''} visible: " + ", ".join(shown) + more,
    )
