"""A local HTTP server that behaves like the Brev API the Brev CLI talks to.

Point code at ``fake.url`` as the Brev API base URL::

    with FakeBrevAPI(token="bak-test") as fake:
        # GET {fake.url}/api/me with "Authorization: Bearer bak-test"
        ...

Real HTTP on 127.0.0.1 (ephemeral port), every request recorded in
``fake.calls`` (Authorization value redacted), fault injection with
``fail_next(status, times, path=...)`` and ``delay`` - the machinery is
shared with :class:`tests.fakes.lepton_api.FakeHTTPAPI`.

Wire behaviour followed (github.com/brevdev/brev-cli: ``pkg/config/config.go``
for the base URL, ``pkg/store/http.go`` for ``Authorization: Bearer`` and the
``utm_source=cli`` query parameter, ``pkg/store/user.go``,
``organization.go``, ``workspace.go`` for the paths, ``pkg/entity/entity.go``
for the JSON shapes, ``pkg/store/http_response_error_test.go`` for error
bodies):

* ``GET    /api/me``                                  current user
* ``GET    /api/organizations``                       the user's organizations
* ``GET    /api/organizations/<orgID>/workspaces``    the org's instances
* ``POST   /api/organizations/<orgID>/workspaces``    create an instance
  (``CreateWorkspacesOptions``: ``name`` required; ``instanceType``,
  ``workspaceGroupId``, ``workspaceClassId``, ``description``, ``labels``,
  ``startupScript``, ``customContainer: {"containerUrl", "entryPoint"}``
  (container mode; ``containerUrl`` required when given) ... kept and shown
  in listings); answered with the instance, status ``DEPLOYING``
* ``POST   /api/secrets``  a secret (``pkg/store/secret.go``
  ``CreateSecretRequest``: ``name``, ``hierarchyType`` org|user,
  ``hierarchyId`` (the org's or the user's id), ``src: {"type": "kv2",
  "config": {"value"}}``, ``dest: {"type": "env", "config": {"name"}}`` or
  ``{"type": "file", "config": {"path"}}``). The CLI documents no list or
  delete call, and neither has this fake; ``secrets`` shows what was stored.
  The answer echoes the request without the value (this fake's choice).
* ``GET    /api/workspaces/<id>``                     one instance
* ``DELETE /api/workspaces/<id>``                     answered with the
  instance, status ``DELETING`` (it stays listed until
  ``remove_instance``)

Instance statuses: RUNNING STARTING STOPPING DEPLOYING STOPPED DELETING
FAILURE; health: HEALTHY UNHEALTHY UNAVAILABLE.

Errors are ``{"errors": [{...}]}``: missing or unknown token -> 401
``{"errors": [{"type": "UnauthorizedError"}]}``; an expired token
(``expired_tokens``) -> 403 ``{"errors": [{"message": "forbidden"}]}``, the
status the CLI treats as "refresh the access token"; an organization the
user is not in -> 403; unknown organization or instance -> 404; missing name
-> 400; unknown path -> 404; wrong method -> 405. Unlisted details (ids,
400/409 texts) are this fake's choices.
"""

from __future__ import annotations

import copy
import re
import secrets
import string
from typing import Any, Iterable, Mapping, Sequence

from .lepton_api import FakeHTTPAPI, RecordedCall

__all__ = ["FakeBrevAPI", "INSTANCE_STATUSES", "RecordedCall"]

INSTANCE_STATUSES = ("RUNNING", "STARTING", "STOPPING", "DEPLOYING", "STOPPED", "DELETING", "FAILURE")
HEALTH_STATUSES = ("HEALTHY", "UNHEALTHY", "UNAVAILABLE")

DEFAULT_USER = {
    "id": "usr-tao0001",
    "username": "tao-dev",
    "name": "TAO Developer",
    "email": "tao-dev@example.com",
    "baseWorkspaceRepo": "",
    "globalUserType": "Standard",
    "onboardingData": {},
}
DEFAULT_ORG = {"id": "org-tao0001", "name": "tao-team", "userNetworkId": "net-tao0001"}


def _id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(9))


class FakeBrevAPI(FakeHTTPAPI):
    """The Brev API for one user (the `token`'s) plus any added with `add_user`.

    Args:
        token: the valid token (``bak-...`` API key or a login token).
        user: the token's user (defaults filled from DEFAULT_USER).
        organizations: the user's organizations (default one, ``tao-team``).
        instances: instances to start with; partial dicts are completed by
            ``make_instance`` (``organizationId`` defaults to the first org).
        expired_tokens: tokens answered 403 forbidden (an expired access token).
    """

    def __init__(
        self,
        token: str = "bak-test-token",
        *,
        user: Mapping[str, Any] | None = None,
        organizations: Sequence[Mapping[str, Any]] | None = None,
        instances: Sequence[Mapping[str, Any]] | None = None,
        expired_tokens: Iterable[str] = (),
    ) -> None:
        super().__init__()
        self.expired_tokens = set(expired_tokens)
        self.users: dict[str, dict] = {}  # user id -> user
        self.tokens: dict[str, str] = {}  # token -> user id
        self.organizations: dict[str, dict] = {}  # org id -> org
        self.members: dict[str, set[str]] = {}  # org id -> user ids
        self.instances: dict[str, dict] = {}  # instance id -> instance
        self.secrets: list[dict] = []  # stored CreateSecretRequest bodies, value included
        orgs = [DEFAULT_ORG] if organizations is None else organizations
        self.user = self.add_user(token, user, orgs)
        self.org_ids = [o["id"] for o in orgs]
        for inst in instances or ():
            self.add_instance(**inst)

    # ------------------------------------------------------------------ state helpers

    def add_user(
        self, token: str, user: Mapping[str, Any] | None = None, organizations: Sequence[Mapping[str, Any]] = ()
    ) -> dict:
        """Another user with its own token, member of `organizations` (created if new)."""
        full = {**DEFAULT_USER, **(user or {})}
        if user is None or "id" not in user:
            full["id"] = _id("usr-") if self.users else DEFAULT_USER["id"]
        with self._lock:
            self.users[full["id"]] = full
            self.tokens[token] = full["id"]
            for org in organizations:
                o = {**{"userNetworkId": _id("net-")}, **dict(org)}
                self.organizations.setdefault(o["id"], o)
                self.members.setdefault(o["id"], set()).add(full["id"])
        return copy.deepcopy(full)

    def make_instance(self, **fields: Any) -> dict:
        """A Workspace entity (entity.go) with realistic defaults, overridden by `fields`."""
        name = fields.get("name") or "tao-gpu-1"
        inst_id = fields.get("id") or _id("")
        base = {
            "id": inst_id,
            "name": name,
            "workspaceGroupId": "GCP",
            "organizationId": self.org_ids[0] if getattr(self, "org_ids", None) else DEFAULT_ORG["id"],
            "workspaceClassId": "",
            "instanceType": "a2-highgpu-1g:nvidia-tesla-a100:1",
            "createdByUserId": DEFAULT_USER["id"],
            "dns": f"{name}-{inst_id[:6]}.brev.sh",
            "status": "RUNNING",
            "gitRepo": "",
            "version": "v1",
            "networkId": "",
            "startupScriptPath": "",
            "healthStatus": "HEALTHY",
            "isStoppable": True,
            "statusMessage": "",
        }
        base.update(fields)
        assert base["status"] in INSTANCE_STATUSES, base["status"]
        return base

    def add_instance(self, **fields: Any) -> dict:
        inst = self.make_instance(**fields)
        with self._lock:
            self.instances[inst["id"]] = inst
        return copy.deepcopy(inst)

    def set_instance_status(self, instance_id: str, status: str, health: str | None = None) -> dict:
        assert status in INSTANCE_STATUSES, status
        with self._lock:
            inst = self.instances[instance_id]
            inst["status"] = status
            if health is not None:
                assert health in HEALTH_STATUSES, health
                inst["healthStatus"] = health
            return copy.deepcopy(inst)

    def remove_instance(self, instance_id: str) -> None:
        with self._lock:
            self.instances.pop(instance_id, None)

    def instance(self, instance_id: str) -> dict | None:
        with self._lock:
            inst = self.instances.get(instance_id)
            return copy.deepcopy(inst) if inst else None

    def list_instances(self, org_id: str | None = None) -> list[dict]:
        with self._lock:
            return copy.deepcopy(
                [i for i in self.instances.values() if org_id is None or i["organizationId"] == org_id]
            )

    # ------------------------------------------------------------------ wire

    def _error_body(self, status: int, message: str) -> Any:
        if status == 401:
            return {"errors": [{"type": "UnauthorizedError"}]}
        return {"errors": [{"message": message}]}

    def _err(self, status: int, message: str) -> tuple[int, Any]:
        return status, self._error_body(status, message)

    def _route(self, call: RecordedCall, token: str | None) -> tuple[int, Any]:
        path = call.path.rstrip("/")
        known = (
            path in ("/api/me", "/api/organizations")
            or re.match(r"^/api/organizations/[^/]+/workspaces$", path)
            or re.match(r"^/api/workspaces/[^/]+$", path)
            or path == "/api/secrets"
        )
        if not known:
            return self._err(404, f"route {call.method} {call.path} not found")
        if token is None or (token not in self.tokens and token not in self.expired_tokens):
            return self._err(401, "unauthorized")
        if token in self.expired_tokens:
            return self._err(403, "forbidden")
        user = self.users[self.tokens[token]]
        method = call.method

        if path == "/api/me":
            return (200, copy.deepcopy(user)) if method == "GET" else self._err(405, "method not allowed")
        if path == "/api/organizations":
            if method != "GET":
                return self._err(405, "method not allowed")
            return 200, [
                copy.deepcopy(o) for oid, o in self.organizations.items() if user["id"] in self.members.get(oid, ())
            ]
        if path == "/api/secrets":
            return self._create_secret(user, call.body) if method == "POST" else self._err(405, "method not allowed")
        m = re.match(r"^/api/organizations/([^/]+)/workspaces$", path)
        if m:
            org_id = m.group(1)
            if org_id not in self.organizations:
                return self._err(404, f"organization {org_id} not found")
            if user["id"] not in self.members.get(org_id, ()):
                return self._err(403, "forbidden")
            if method == "GET":
                return 200, [copy.deepcopy(i) for i in self.instances.values() if i["organizationId"] == org_id]
            if method == "POST":
                return self._create(org_id, user, call.body)
            return self._err(405, "method not allowed")
        m = re.match(r"^/api/workspaces/([^/]+)$", path)
        inst = self.instances.get(m.group(1)) if m else None
        if inst is None:
            return self._err(404, f"workspace {m.group(1) if m else ''} not found")
        if user["id"] not in self.members.get(inst["organizationId"], ()):
            return self._err(403, "forbidden")
        if method == "GET":
            return 200, copy.deepcopy(inst)
        if method == "DELETE":
            inst["status"] = "DELETING"
            return 200, copy.deepcopy(inst)
        return self._err(405, "method not allowed")

    def _create(self, org_id: str, user: dict, body: Any) -> tuple[int, Any]:
        if not isinstance(body, dict):
            return self._err(400, "request body must be a JSON object")
        name = body.get("name")
        if not name or not isinstance(name, str):
            return self._err(400, "name is required")
        if any(
            i["name"] == name and i["organizationId"] == org_id and i["status"] != "DELETING"
            for i in self.instances.values()
        ):
            return self._err(409, f"a workspace named {name} already exists")
        fields = {
            k: v
            for k, v in body.items()
            if k
            in (
                "workspaceGroupId",
                "workspaceClassId",
                "instanceType",
                "gitRepo",
                "startupScriptPath",
                "startupScript",
                "description",
                "labels",
                "customContainer",
                "workspaceVersion",
            )
        }
        container = body.get("customContainer")
        if container is not None and (not isinstance(container, dict) or not container.get("containerUrl")):
            return self._err(400, "customContainer.containerUrl is required")
        if "isStoppable" in body and body["isStoppable"] is not None:
            fields["isStoppable"] = bool(body["isStoppable"])
        inst = self.make_instance(
            name=name,
            organizationId=org_id,
            createdByUserId=user["id"],
            status="DEPLOYING",
            healthStatus="UNAVAILABLE",
            **fields,
        )
        self.instances[inst["id"]] = inst
        return 200, copy.deepcopy(inst)

    def _create_secret(self, user: dict, body: Any) -> tuple[int, Any]:
        if not isinstance(body, dict) or not body.get("name"):
            return self._err(400, "name is required")
        kind, owner = body.get("hierarchyType"), body.get("hierarchyId")
        if kind == "user":
            if owner != user["id"]:
                return self._err(403, "forbidden")
        elif kind == "org":
            if owner not in self.organizations:
                return self._err(404, f"organization {owner} not found")
            if user["id"] not in self.members.get(owner, ()):
                return self._err(403, "forbidden")
        else:
            return self._err(400, "hierarchyType must be org or user")
        src, dest = body.get("src") or {}, body.get("dest") or {}
        if src.get("type") != "kv2" or not isinstance((src.get("config") or {}).get("value"), str):
            return self._err(400, "src must be {type: kv2, config: {value}}")
        dest_config = dest.get("config") or {}
        if dest.get("type") == "env":
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", str(dest_config.get("name") or "")):
                return self._err(400, "dest.config.name must be an environment variable name")
        elif dest.get("type") == "file":
            if not str(dest_config.get("path") or "").startswith("/"):
                return self._err(400, "dest.config.path must be an absolute path")
        else:
            return self._err(400, "dest.type must be env or file")
        self.secrets.append(copy.deepcopy(body))
        echoed = copy.deepcopy(body)
        echoed["src"]["config"] = {}
        return 200, echoed
