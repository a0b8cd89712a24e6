"""Brev preflight: the Brev API accepts BREV_API_TOKEN, what it can see, and that BREV_INSTANCE can be launched from.

Read-only: GETs only; nothing is created, started or stopped. A launch
copies the RUNNING instance BREV_INSTANCE names (the backend looks it up
the same way, among the same organisations), so preflight passes only when
that instance exists and runs: the gate never opens for a launch that
cannot start.

Documented behaviour followed (the Brev CLI, github.com/brevdev/brev-cli,
`pkg/config/config.go`, `pkg/store/{http,user,organization,workspace}.go`,
`pkg/entity/entity.go`, `pkg/store/http_response_error_test.go`):

* Base URL ``https://brevapi.us-west-2-prod.control-plane.brev.dev``
  (``BREV_API_URL`` in the CLI; ``PlatformSettings.brev_api_url`` here).
* Auth: ``Authorization: Bearer <token>`` (resty ``SetAuthToken``). API keys
  start with ``bak-`` (``brev login --api-key``); `brev login` tokens are
  short-lived access tokens.
* ``GET /api/me`` -> the current user (``id``, ``username``, ``name``,
  ``email`` ...): proves the token is accepted.
* ``GET /api/organizations`` -> ``[{"id", "name", "userNetworkId"}]``.
* ``GET /api/organizations/<orgID>/workspaces`` -> the org's instances
  ("workspaces" in the API: ``id``, ``name``, ``organizationId``,
  ``instanceType``, ``status`` RUNNING|STARTING|STOPPING|DEPLOYING|STOPPED|
  DELETING|FAILURE, ``healthStatus`` ...).
* Errors: ``{"errors": [{"type": "UnauthorizedError"}]}`` with 401 for a
  refused/expired API key; 403 (``{"errors": [{"message": "forbidden"}]}``)
  is what the CLI treats as an expired access token (it refreshes and
  retries on 403).

Status mapping: 2xx pass; 401/403 credential failure with how to get a new
token; 404 on /api/me means the URL is not the Brev API; 429/5xx and
transport failures are "unreachable, retriable" (502/503/504 retried once).
The token never appears in any result text.
"""

from __future__ import annotations

import urllib.parse

from taobot.preflight.base import CheckResult, PreflightRequest
from taobot.preflight.lepton import excerpt, http_client, unreachable
from taobot.rest import Reply, RestClient

TOKEN = "BREV_API_TOKEN"
INSTANCE = "BREV_INSTANCE"

ACCESS = "brev.access"
INSTANCES = "brev.instances"
NAMED = "brev.instance"
ACCESS_LABEL = "Brev API token"
INSTANCES_LABEL = "Brev instances"
NAMED_LABEL = "Brev instance"

MAX_ORGS = 10  # the organisations a launch looks in (backends.brev), so both find the same instance
NAMES_SHOWN = 5

TOKEN_FIX = (
    "Create an API key in the Brev console (keys start with `bak-`; `brev login --api-key` takes the same key), "
    "or run `brev login` and copy a fresh token, then press *Enter credentials* and give BREV_API_TOKEN."
)


def check(request: PreflightRequest) -> list[CheckResult]:
    if not request.cred(TOKEN):
        return [
            CheckResult(
                ACCESS,
                ACCESS_LABEL,
                False,
                f"not checked: missing {TOKEN}",
                f"Press *Enter credentials* and give {TOKEN}.",
            )
        ]
    token = request.cred(TOKEN).strip()
    secrets = (token, request.cred(TOKEN))
    base = request.settings.brev_api_url.rstrip("/")
    client = http_client(base, token, request.settings.http_timeout_s, secrets)

    me = client.call("GET", "/api/me")
    access = _access_result(me, base, secrets)
    if not access.ok:
        return [access]
    listing, instances = _instances_result(client, secrets)
    if not listing.ok:
        return [access, listing]
    return [access, listing, _named_instance_result((request.cred(INSTANCE) or "").strip(), instances)]


def _named_instance_result(wanted: str, instances: list[dict]) -> CheckResult:
    """The launch copies BREV_INSTANCE's organisation and machine type: it must name a RUNNING instance."""
    listed = ", ".join(f"`{w.get('name') or w.get('id')}` ({w.get('status') or '?'})" for w in instances) or "none"
    if not wanted:
        return CheckResult(
            NAMED,
            NAMED_LABEL,
            False,
            f"{INSTANCE} is not set; the job runs on the machine type of one of your RUNNING instances",
            f"Press *Enter credentials* and give {INSTANCE}: the name or id of a RUNNING instance (yours: {listed}).",
        )
    match = next((w for w in instances if wanted in (w.get("id"), w.get("name"))), None)
    if match is None:
        return CheckResult(
            NAMED,
            NAMED_LABEL,
            False,
            f"no Brev instance `{wanted}` in your organizations",
            f"Press *Enter credentials* and set {INSTANCE} to one of your instances: {listed}.",
        )
    status = str(match.get("status") or "UNKNOWN").upper()
    name = match.get("name") or wanted
    if status != "RUNNING":
        return CheckResult(
            NAMED,
            NAMED_LABEL,
            False,
            f"`{name}` is {status}, not RUNNING; a launch copies a running instance",
            f"Start it with `brev start {name}` and run preflight again.",
        )
    kind = match.get("instanceType") or match.get("workspaceClassId") or "?"
    return CheckResult(NAMED, NAMED_LABEL, True, f"`{name}` is RUNNING ({kind}); the job runs on the same type")


def _said(answer: Reply, secrets: tuple[str, ...]) -> str:
    said = excerpt(answer, secrets)
    return f' ("{said}")' if said else ""


def _credential_failure(check_id: str, label: str, answer: Reply, secrets: tuple[str, ...]) -> CheckResult | None:
    if answer.status == 401:
        return CheckResult(
            check_id,
            label,
            False,
            f"Brev refused BREV_API_TOKEN: HTTP 401{_said(answer, secrets)}; the token is wrong, expired or revoked",
            TOKEN_FIX,
        )
    if answer.status == 403:
        return CheckResult(
            check_id,
            label,
            False,
            f"Brev denied BREV_API_TOKEN: HTTP 403{_said(answer, secrets)}; Brev answers 403 for an expired "
            "login token or a token without access to this resource",
            TOKEN_FIX
            + " If the token is new, check that its user belongs to the organization that owns your instances.",
        )
    return None


def _access_result(answer: Reply, base: str, secrets: tuple[str, ...]) -> CheckResult:
    down = unreachable(ACCESS, ACCESS_LABEL, "The Brev API", answer, secrets)
    if down:
        return down
    refused = _credential_failure(ACCESS, ACCESS_LABEL, answer, secrets)
    if refused:
        return refused
    wrong_url = (
        "Set the bot's Brev API URL to the Brev API (default https://brevapi.us-west-2-prod.control-plane.brev.dev)."
    )
    if answer.status is not None and 300 <= answer.status < 400:
        return CheckResult(
            ACCESS,
            ACCESS_LABEL,
            False,
            f"{answer.url} answered with a redirect (HTTP {answer.status}); not followed, so the token stays on this host",
            wrong_url,
        )
    if answer.status == 404:
        return CheckResult(
            ACCESS, ACCESS_LABEL, False, f"{answer.url} does not exist (HTTP 404): this is not the Brev API", wrong_url
        )
    if answer.status is None or not 200 <= answer.status < 300:
        return CheckResult(
            ACCESS,
            ACCESS_LABEL,
            False,
            f"Brev answered HTTP {answer.status}{_said(answer, secrets)} for the current user",
            "Run preflight again; if this persists, report the answer to the taobot maintainers.",
        )
    user = answer.body
    if not isinstance(user, dict) or not user.get("id"):
        kind = answer.content_type.split(";")[0] or "an empty body"
        return CheckResult(
            ACCESS,
            ACCESS_LABEL,
            False,
            f"{answer.url} answered HTTP {answer.status} but not with a Brev user (got {kind})",
            wrong_url,
        )
    who = user.get("username") or user.get("name") or user["id"]
    return CheckResult(ACCESS, ACCESS_LABEL, True, f"Brev accepted the token for user `{who}`")


def _instances_result(client: RestClient, secrets: tuple[str, ...]) -> tuple[CheckResult, list[dict]]:
    """The organisations' instance listing as a result, and every instance seen (the same ones a launch looks at)."""
    orgs_answer = client.call("GET", "/api/organizations")
    failed = _listing_failure(orgs_answer, "organizations", secrets)
    if failed:
        return failed, []
    orgs = [o for o in orgs_answer.body if isinstance(o, dict) and o.get("id")]
    if not orgs:
        return CheckResult(
            INSTANCES,
            INSTANCES_LABEL,
            False,
            "the token's user belongs to no Brev organization; Brev instances live in an organization",
            "Create or join an organization in the Brev console, then run preflight again.",
        ), []
    parts, seen = [], []
    for org in orgs[:MAX_ORGS]:
        org_id = urllib.parse.quote(str(org["id"]), safe="")
        answer = client.call("GET", f"/api/organizations/{org_id}/workspaces")
        failed = _listing_failure(answer, f"instances of organization `{org.get('name') or org['id']}`", secrets)
        if failed:
            return failed, []
        instances = [w for w in answer.body if isinstance(w, dict)]
        parts.append(_describe_org(org, instances))
        seen += instances
    more = f"; {len(orgs) - MAX_ORGS} more organizations not listed" if len(orgs) > MAX_ORGS else ""
    return CheckResult(INSTANCES, INSTANCES_LABEL, True, "; ".join(parts) + more), seen


def _listing_failure(answer: Reply, what: str, secrets: tuple[str, ...]) -> CheckResult | None:
    down = unreachable(INSTANCES, INSTANCES_LABEL, "The Brev API", answer, secrets)
    if down:
        return down
    refused = _credential_failure(INSTANCES, INSTANCES_LABEL, answer, secrets)
    if refused:
        return refused
    if answer.status is None or not 200 <= answer.status < 300:
        return CheckResult(
            INSTANCES,
            INSTANCES_LABEL,
            False,
            f"listing {what} answered HTTP {answer.status}{_said(answer, secrets)}",
            "Run preflight again; if this persists, report the answer to the taobot maintainers.",
        )
    if not isinstance(answer.body, list):
        return CheckResult(
            INSTANCES,
            INSTANCES_LABEL,
            False,
            f"listing {what} at {answer.url} did not answer with a list",
            "Set the bot's Brev API URL to the Brev API (default https://brevapi.us-west-2-prod.control-plane.brev.dev).",
        )
    return None


def _describe_org(org: dict, instances: list[dict]) -> str:
    name = org.get("name") or org["id"]
    if not instances:
        return f"organization `{name}`: no instances yet"
    by_status: dict[str, int] = {}
    for w in instances:
        s = str(w.get("status") or "UNKNOWN")
        by_status[s] = by_status.get(s, 0) + 1
    counts = ", ".join(f"{n} {s}" for s, n in sorted(by_status.items()))
    names = ", ".join(f"`{w.get('name') or w.get('id')}`" for w in instances[:NAMES_SHOWN])
    more = f" and {len(instances) - NAMES_SHOWN} more" if len(instances) > NAMES_SHOWN else ""
    n = len(instances)
    return f"organization `{name}`: {n} instance{'s' if n != 1 else ''} ({counts}): {names}{more}"
