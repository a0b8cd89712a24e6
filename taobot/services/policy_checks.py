"""The operator's policy applied to one launch thread: answers screened, gate rules worked out, refusals said.

Three places ask the policy, so a refusal never depends on which way in a
person took:

- an answer (`screen`): a platform the owner may not use here, an image
  outside the allowed prefixes, a GPU count over the per-launch limit are
  refused before the transition runs, so nothing changes;
- the gate (`gate_rules`): the same facts as `GateRules`, plus the
  per-person GPU total (the owner's active launches) and whether this launch
  needs an approval, for every card, preflight and launch;
- preflight (`preflight_refusals`): a launch the policy refuses is not even
  checked.

Every refusal is an audit row (`Desk.audit(..., allowed=False)`).
"""

from __future__ import annotations

import logging

from taobot.catalog import Catalog, find_platform
from taobot.errors import UnknownNameError
from taobot.gate import GateRules
from taobot.intake import (
    AcceptComputeDefaults,
    ChoosePlatform,
    ConfirmImage,
    Event,
    IntakeState,
    OverrideImage,
    SetCompute,
    apply,
    check_image_ref,
    dataset_inputs,
    platform_of,
)
from taobot.policy import Policy
from taobot.preflight.base import local_path

log = logging.getLogger(__name__)

SLURM_TIME = "SLURM_TIME_HOURS"
SLURM_DEFAULT_HOURS = 4.0  # what the SLURM backend asks for when neither the person nor the catalog says


def launch_gpus(state: IntakeState, catalog: Catalog) -> int | None:
    """GPUs one launch asks for (per node × nodes, platform defaults for what is not given); None before a platform."""
    platform = platform_of(state, catalog)
    if platform is None:
        return None
    return state.compute.get("num_gpus", platform.resources.num_gpus) * state.compute.get("num_nodes", 1)


def wall_hours(state: IntakeState, catalog: Catalog, time_hours: str | None) -> float | None:
    """The launch's wall-time limit in hours: SLURM_TIME_HOURS, else the platform's default; None: no limit."""
    platform = platform_of(state, catalog)
    if platform is None:
        return None
    if platform.name == "slurm":
        try:
            return float(time_hours) if time_hours else (platform.resources.time_hours or SLURM_DEFAULT_HOURS)
        except ValueError:
            return None  # unreadable: its GPU hours have no bound (preflight names the bad value)
    return platform.resources.time_hours


def open_platforms_text(policy: Policy, catalog: Catalog, user: str, channel: str | None) -> str:
    names = policy.open_platforms(catalog.platforms, user, channel)
    return "Platforms open to you here: " + (", ".join(f"`{n}`" for n in names) or "none") + "."


def event_refusal(policy: Policy, catalog: Catalog, state: IntakeState, event: Event) -> str | None:
    """Why the policy refuses this answer in this state, or None (the transition then judges it as usual)."""
    if isinstance(event, ChoosePlatform):
        try:
            platform = find_platform(catalog, event.name)
        except UnknownNameError:
            return None
        refusal = policy.platform_refusal(platform.name, platform.display_name, state.owner, state.channel)
        if refusal:
            return f"{refusal}. {open_platforms_text(policy, catalog, state.owner, state.channel)}"
        return None
    if isinstance(event, OverrideImage):
        ref = event.ref.strip()
        return None if check_image_ref(ref) else policy.image_refusal(ref)
    if isinstance(event, ConfirmImage):
        refusal = policy.image_refusal(state.image.default)
        return f"the default {refusal}; give `image=<ref>` with one of those prefixes" if refusal else None
    if isinstance(event, (SetCompute, AcceptComputeDefaults)) and policy.gpus.max_per_launch is not None:
        trial = apply(state, event, catalog)
        gpus = launch_gpus(trial.state, catalog)
        if not trial.errors and gpus is not None and gpus > policy.gpus.max_per_launch:
            what = f"`{event.field}={event.value}`" if isinstance(event, SetCompute) else "the platform defaults"
            return (
                f"{what} would make {gpus} GPUs in one launch; the policy allows at most {policy.gpus.max_per_launch}"
            )
    return None


def screen_events(
    policy: Policy, catalog: Catalog, state: IntakeState, events: list[Event]
) -> tuple[list[Event], list[tuple[Event, str]]]:
    """The events the policy lets through, in order, and each refused one with why. Judged one after another."""
    kept: list[Event] = []
    refused: list[tuple[Event, str]] = []
    trial = state
    for event in events:
        reason = event_refusal(policy, catalog, trial, event)
        if reason:
            refused.append((event, reason))
            continue
        kept.append(event)
        trial = apply(trial, event, catalog).state
    return kept, refused


class PolicyChecks:
    """The policy of one taobot (the Desk's), applied with the store's facts about a person's launches."""

    def __init__(self, desk) -> None:
        self.desk = desk

    @property
    def policy(self) -> Policy:
        return self.desk.policy

    def screen(self, state: IntakeState, user: str, events: list[Event]) -> tuple[list[Event], list[str]]:
        """The answers the policy allows, and a refusal line for each one it does not (with an audit row)."""
        kept, refused = screen_events(self.policy, self.desk.catalog, state, events)
        for event, reason in refused:
            self.desk.audit(
                user, "answer", intake=state, allowed=False, reason=reason, detail={"event": type(event).__name__}
            )
        return kept, [reason[0].upper() + reason[1:] + "." for _event, reason in refused]

    def active_gpus(self, owner: str, except_intake: str) -> int:
        """GPUs of `owner`'s launches that may still run, other than those of `except_intake`."""
        total = 0
        for launch in self.desk.store.active_launches():
            if launch.owner != owner or launch.intake_id == except_intake:
                continue
            if launch.state.terminal or launch.ended_at is not None:
                continue
            intake = self.desk.store.get_intake(launch.intake_id)
            total += (launch_gpus(intake, self.desk.catalog) or 0) if intake is not None else 0
        return total

    def rules(self, state: IntakeState) -> GateRules:
        """What the policy says about this launch now, for the gate."""
        desk, policy = self.desk, self.policy
        catalog = desk.catalog
        platform = platform_of(state, catalog)
        platform_refusal = (
            policy.platform_refusal(platform.name, platform.display_name, state.owner, state.channel)
            if platform
            else None
        )
        gpus = launch_gpus(state, catalog)
        compute_refusal = approval = None
        if gpus is not None:
            others = self.active_gpus(state.owner, state.id) if policy.gpus.max_per_person is not None else 0
            compute_refusal = policy.gpu_refusal(gpus, others)
            hours = None
            if policy.approvals.gpu_hours_over is not None:
                time_hours = desk.credential_values(state).get(SLURM_TIME) if SLURM_TIME in state.credentials else None
                hours = wall_hours(state, catalog, time_hours)
            approval = policy.approval_reason(gpus, hours, platform.display_name)
        return GateRules(
            platform_refusal=platform_refusal,
            image_prefixes=policy.image_prefixes,
            compute_refusal=compute_refusal,
            approval=approval,
            approvers=policy.approvers_for(state.owner, desk.admins),
            preflight_valid_s=desk.preflight_valid_s,
        )

    def mount_refusals(self, state: IntakeState, values: dict[str, str]) -> list[str]:
        """Host paths of a local-docker launch the mount rules refuse now (resolved again at launch time)."""
        if state.platform != "local-docker":
            return []
        rules = self.policy.mounts
        host = values.get("DOCKER_HOST") or ""
        if host.startswith("unix://"):
            rules = rules.with_protected((host[len("unix://") :], "the Docker socket of this launch"))
        paths = [(key, local_path(path)) for key, path in dataset_inputs(state, self.desk.catalog).items()]
        paths.append(("results", local_path(state.results_uri or "")))
        if values.get("HOST_SSH_PATH"):
            paths.append(("HOST_SSH_PATH", values["HOST_SSH_PATH"]))
        found = [(key, rules.refusal(path)) for key, path in paths if path]
        return [f"`{key}`: {refusal}" for key, refusal in found if refusal]

    def preflight_refusals(self, state: IntakeState, rules: GateRules) -> list[str]:
        """Why the policy refuses this launch outright (so preflight does not even start)."""
        image = state.image.chosen
        found = [rules.platform_refusal, self.policy.image_refusal(image) if image else None, rules.compute_refusal]
        return [r for r in found if r]

    def refuse(self, state: IntakeState, user: str, action: str, reasons: list[str], head: str) -> None:
        """Say in the thread what the policy refused and why, and record it."""
        self.desk.audit(user, action, intake=state, allowed=False, reason="; ".join(reasons))
        self.desk.reply(state, f":no_entry: {head}\n" + "\n".join(f"• {r}" for r in reasons))


def gate_rules(desk, state: IntakeState) -> GateRules:
    """The gate rules of `state` under the desk's policy (the Desk's card and every service use this)."""
    return PolicyChecks(desk).rules(state)
