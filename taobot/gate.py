"""The launch gate: seven conditions computed from stored state (an eighth when the policy asks for an approval).

Every code path that creates an artifact (spec, runner, remote folder,
container, Kubernetes object, job) calls `require_open` first. A preflight
result counts only for the exact inputs it checked: `input_fingerprint`
covers platform, credentials (by fingerprint), image, datasets, results
location, compute shape and mount confirmations, so changing any of them
after a pass closes the gate again; and only for `preflight_valid_s` after
it finished, because a cluster, a daemon or a permission can change.

The operator's policy reaches the gate as `GateRules`, facts the caller
worked out (the gate reads no policy file, store or clock of its own):
whether the owner may use the platform here, the image prefixes, whether
the GPU limits hold, and whether this launch needs an approval and from
whom. An approval counts for the exact inputs it approved, like a preflight.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field

from taobot.catalog import Catalog
from taobot.errors import GateClosedError
from taobot.intake import (
    IntakeState,
    compute_fields,
    credential_needs,
    dataset_inputs,
    missing_inputs,
    model_of,
    wanted_credentials,
)

DATASET_SCOPES = ("dataset", "mount")  # preflight results about one dataset or results location
PREFLIGHT_VALID_S = 3600.0  # how long a preflight counts when the caller says nothing else


@dataclass(frozen=True)
class GateRules:
    """What the operator's policy says about one launch, worked out by the caller. The default: no policy."""

    platform_refusal: str | None = None  # why the owner may not use this platform here (condition 1)
    image_prefixes: tuple[str, ...] | None = None  # the chosen image must start with one; None: any (condition 4)
    compute_refusal: str | None = None  # a GPU limit this launch breaks (condition 7)
    approval: str | None = None  # why an approval is needed: the eighth condition; None: no approval needed
    approvers: frozenset[str] = field(default_factory=frozenset)  # who may give it (never the owner)
    preflight_valid_s: float = PREFLIGHT_VALID_S


@dataclass(frozen=True)
class GateCondition:
    number: int
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class Gate:
    conditions: tuple[GateCondition, ...]

    @property
    def open(self) -> bool:
        return all(c.ok for c in self.conditions)

    @property
    def missing(self) -> list[str]:
        return [f"{c.number}. {c.name}: {c.detail}" for c in self.conditions if not c.ok]


def input_fingerprint(state: IntakeState, catalog: Catalog, needs=None) -> str:
    """A digest of every input a preflight checks. Values of secrets enter only as their keyed fingerprints."""
    needed = wanted_credentials(state, catalog, needs)
    body = {
        "model": state.model,
        "action": state.action,
        "platform": state.platform,
        "ssh_agent": state.ssh_agent,
        "credentials": {k: v for k, v in sorted(state.credentials.items()) if k in needed},
        "image": state.image.chosen,
        "datasets": dataset_inputs(state, catalog) if state.platform else {},
        "results": state.results_uri,
        "compute": state.compute,
        "mounts": sorted(state.mount_confirmations),
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:24]


def compute_gate(
    state: IntakeState, catalog: Catalog, needs=None, rules: GateRules | None = None, now: float | None = None
) -> Gate:
    """The seven conditions (eight with an approval). `needs`, when the caller has them, saves asking again."""
    needs = credential_needs(state, catalog) if needs is None else needs
    rules = rules or GateRules()
    now = time.time() if now is None else now
    fingerprint = input_fingerprint(state, catalog, needs)
    platform_needs = [n.name for n in needs if n.reason != "model"]
    # The model's own credentials are needed whatever the platform, so they come from the model.
    model_needs = list(model_of(state, catalog).credentials)
    missing_platform = [n for n in platform_needs if n not in state.credentials]
    missing_model = [n for n in model_needs if n not in state.credentials]

    record = state.preflight
    current = record is not None and record.status != "running" and record.fingerprint == fingerprint
    results = record.results if (record and current) else []
    # Every result counts for exactly one condition: dataset (and mount) results for 6, all others for 5.
    dataset_results = [r for r in results if r.get("scope") in DATASET_SCOPES]
    platform_results = [r for r in results if r.get("scope") not in DATASET_SCOPES]
    failed_platform = [r["label"] for r in platform_results if not r["ok"]]
    failed_elsewhere = [r for r in dataset_results if not r["ok"]]
    if record is None:
        access = (False, "preflight has not run")
    elif record.status == "running":
        access = (False, "preflight is running")
    elif not current:
        access = (False, "inputs changed since the last preflight; run it again")
    elif now - (record.finished_at or record.started_at) > rules.preflight_valid_s:
        ran = int((now - (record.finished_at or record.started_at)) // 60)
        valid = int(rules.preflight_valid_s // 60)
        access = (
            False,
            f"the preflight result expired (it ran {ran} min ago; results count for {valid} min); run it again",
        )
    elif failed_platform:
        access = (False, "failed: " + ", ".join(failed_platform))
    elif not platform_results:
        access = (False, "no platform check ran")
    elif record.status != "passed" and not failed_elsewhere:
        # A failed run whose failure no condition names: never count it as passed.
        access = (False, "preflight did not pass; run it again")
    else:
        access = (True, "passed from the bot's host")

    mapping = dataset_inputs(state, catalog) if state.platform else {}
    unmapped = missing_inputs(state, catalog)
    unverified = []
    for key in mapping:
        mine = [r for r in dataset_results if r.get("key") == key]
        if not mine or not all(r["ok"] for r in mine):
            unverified.append(key)
    # Failed checks of other locations (the results folder): named too, so they keep the gate shut.
    unverified += list(
        dict.fromkeys(r.get("key") or r["label"] for r in failed_elsewhere if r.get("key") not in mapping)
    )
    if unmapped:
        datasets = (False, "not mapped: " + ", ".join(unmapped))
    elif unverified:
        datasets = (False, "not verified from the platform: " + ", ".join(unverified))
    else:
        datasets = (
            True,
            f"{len(mapping)} input(s) mapped and verified" if mapping else "this action takes no dataset input",
        )

    missing_compute = [f for f in compute_fields(state, catalog) if f not in state.compute]
    image = state.image.chosen
    image_refused = (
        image is not None and rules.image_prefixes is not None and not image.startswith(rules.image_prefixes)
    )
    conditions = (
        GateCondition(
            1,
            "platform chosen",
            state.platform is not None and not rules.platform_refusal,
            rules.platform_refusal or state.platform or "no platform",
        ),
        GateCondition(
            2,
            "platform credentials present",
            state.platform is not None and not missing_platform,
            "missing: " + ", ".join(missing_platform) if missing_platform else "present",
        ),
        GateCondition(
            3,
            "model credentials present",
            not missing_model,
            "missing: " + ", ".join(missing_model) if missing_model else "present" if model_needs else "none needed",
        ),
        GateCondition(
            4,
            "image confirmed or overridden",
            image is not None and not image_refused,
            f"`{image}` is outside the allowed prefixes: " + ", ".join(f"`{p}`" for p in rules.image_prefixes or ())
            if image_refused
            else image or "default not confirmed",
        ),
        GateCondition(5, "platform access check passed", *access),
        GateCondition(6, "datasets mapped and verified", *datasets),
        GateCondition(
            7,
            "compute shape known",
            not missing_compute and not rules.compute_refusal,
            "missing: " + ", ".join(missing_compute)
            if missing_compute
            else rules.compute_refusal or ", ".join(f"{k}={v}" for k, v in state.compute.items()),
        ),
    )
    if rules.approval is not None:
        conditions += (GateCondition(8, "approved by a second person", *_approval(state, rules, fingerprint)),)
    return Gate(conditions)


def _approval(state: IntakeState, rules: GateRules, fingerprint: str) -> tuple[bool, str]:
    given = state.approval
    who = ", ".join(f"<@{a}>" for a in sorted(rules.approvers))
    ask = f"an admin or approver ({who}) must press *Approve*" if who else "the policy names no one who may approve"
    if given is None:
        return False, f"{rules.approval}; {ask}"
    if given.fingerprint != fingerprint:
        return False, f"inputs changed since <@{given.by}> approved; {rules.approval}; {ask}"
    if given.by == state.owner or given.by not in rules.approvers:
        return False, f"<@{given.by}> may not approve this launch; {ask}"
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(given.at))
    return True, f"approved by <@{given.by}> at {when} ({rules.approval})"


def require_open(
    state: IntakeState, catalog: Catalog, what: str, rules: GateRules | None = None, now: float | None = None
) -> Gate:
    """Raise GateClosedError unless every condition holds. `what` names the artifact about to be created."""
    gate = compute_gate(state, catalog, rules=rules, now=now)
    if not gate.open:
        raise GateClosedError(
            f"Refusing to {what}: the launch gate is closed ({'; '.join(gate.missing)}).", gate.missing
        )
    return gate
