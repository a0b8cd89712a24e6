"""Transitions: `apply(state, event, catalog)` returns the new state and what to tell the person.

A refused event leaves the state exactly as it was. Nothing here touches
Slack, the database or the network.
"""

from __future__ import annotations

import time

from taobot.catalog import ROOT_ROLES, Catalog, find_platform
from taobot.errors import UnknownNameError
from taobot.intake.events import (
    AcceptComputeDefaults,
    Cancel,
    ChoosePlatform,
    ConfirmImage,
    ConfirmMounted,
    CredentialsStored,
    Event,
    Outcome,
    OverrideImage,
    SetCompute,
    SetMonitoring,
    SetNotify,
    SetResults,
    SetRetry,
    SetRoot,
    SetSpecInput,
    UseSshAgent,
)
from taobot.intake.queries import (
    action_of,
    compute_defaults,
    compute_fields,
    mounted_paths,
    next_step,
    platform_of,
    unset_compute_defaults,
)
from taobot.intake.state import CLOSED_STATUSES, Confirmation, IntakeState, Step
from taobot.intake.values import (
    INTERVAL_ADVICE,
    MAX_INTERVAL,
    MIN_INTERVAL,
    ROLE_ALIASES,
    check_image_ref,
    check_input_path,
    path_kind,
)


def apply(state: IntakeState, event: Event, catalog: Catalog, now: float | None = None) -> Outcome:
    """Apply one event. Refused events leave the state exactly as it was."""
    if state.status in CLOSED_STATUSES and not (isinstance(event, SetRetry) and state.status == "launched"):
        # A launched thread still takes `retry=`: it is about the job's failure, not the job's inputs.
        again = (
            "reply `relaunch key=value …` (e.g. `relaunch num_gpus=8`) to launch it again in this thread with "
            f"changes, or start a new one with `/tao launch {state.model}`."
            if state.status == "launched"
            else f"start a new one with `/tao launch {state.model}`."
        )
        return Outcome(state, errors=[f"This intake is {state.status}; {again}"])
    new = state.model_copy(deep=True)
    out = Outcome(new)
    handler = _HANDLERS[type(event)]
    handler(new, event, catalog, out)
    if out.errors and not out.notes:
        return Outcome(state, errors=out.errors)
    new.updated_at = now if now is not None else time.time()
    if new.status == "collecting" and next_step(new, catalog) is Step.COMPLETE:
        new.status = "complete"
    elif new.status == "complete" and next_step(new, catalog) is not Step.COMPLETE:
        new.status = "collecting"
    return out


def _choose_platform(s: IntakeState, e: ChoosePlatform, catalog: Catalog, out: Outcome) -> None:
    try:
        platform = find_platform(catalog, e.name)
    except UnknownNameError as exc:
        out.errors.append(exc.message)
        return
    if s.platform == platform.name:
        out.notes.append(f"Platform is already {platform.display_name}.")
        return
    s.platform = platform.name
    out.notes.append(f"Platform set to {platform.display_name}.")
    # Paths and shapes given for the previous platform may not fit this one.
    for role, root in list(s.roots.items()):
        err = path_kind(platform, root)[1]
        if err:
            del s.roots[role]
            out.notes.append(f"Dropped the {role} root: {err}")
    for key, value in list(s.spec_inputs.items()):
        err = path_kind(platform, value)[1]
        if err:
            del s.spec_inputs[key]
            out.notes.append(f"Dropped `{key}`: {err}")
    if s.results_uri and path_kind(platform, s.results_uri)[1]:
        out.notes.append(f"Dropped the results location `{s.results_uri}`; it does not fit {platform.display_name}.")
        s.results_uri = None
    limits = {"num_gpus": platform.resources.max_num_gpus_per_node, "num_nodes": platform.resources.max_num_nodes}
    for name, value in list(s.compute.items()):
        if value > limits.get(name, value):
            del s.compute[name]
            out.notes.append(f"Cleared {name}={value}: {platform.display_name} allows at most {limits[name]}.")
    s.mount_confirmations.clear()


def _set_notify(s: IntakeState, e: SetNotify, catalog: Catalog, out: Outcome) -> None:
    s.notify_dm = e.dm
    out.notes.append(
        "The job's end will also be sent to you by DM." if e.dm else "The job's end will be posted in this thread only."
    )


def _set_retry(s: IntakeState, e: SetRetry, catalog: Catalog, out: Outcome) -> None:
    s.retry_infra = e.infra
    out.notes.append(
        f"An infrastructure failure will be retried by itself up to {e.infra} time{'s' if e.infra != 1 else ''} "
        "(preflight first each time); other failures never are."
        if e.infra
        else "Automatic retry is off."
    )


def _set_monitoring(s: IntakeState, e: SetMonitoring, catalog: Catalog, out: Outcome) -> None:
    if e.interval is not None and not MIN_INTERVAL <= e.interval <= MAX_INTERVAL:
        out.errors.append(
            f"The status interval must be {MIN_INTERVAL}–{MAX_INTERVAL} minutes ({INTERVAL_ADVICE}); got {e.interval}."
        )
        return
    if e.enabled is not None:
        s.monitor = e.enabled
        out.notes.append("Status updates in this thread: " + ("on." if e.enabled else "off."))
        if e.enabled and e.interval is None and s.interval_minutes is None:
            # `monitor=yes` alone accepts the default interval instead of asking again.
            s.interval_minutes = catalog.default_status_interval_minutes
            out.notes.append(f"Status interval: every {s.interval_minutes} min (default).")
    if e.interval is not None:
        s.interval_minutes = e.interval
        if s.monitor is None:
            s.monitor = True
        out.notes.append(f"Status interval: every {e.interval} min.")


def _credentials_stored(s: IntakeState, e: CredentialsStored, catalog: Catalog, out: Outcome) -> None:
    for name, fingerprint in e.fingerprints.items():
        if name not in catalog.credentials:
            out.errors.append(f"`{name}` is not a credential taobot knows.")
            continue
        s.credentials[name] = fingerprint
        out.notes.append(f"{name} is set.")


def _use_ssh_agent(s: IntakeState, e: UseSshAgent, catalog: Catalog, out: Outcome) -> None:
    s.ssh_agent = e.enabled
    out.notes.append(
        "Using your SSH agent: the bot needs SSH_AUTH_SOCK."
        if e.enabled
        else "Using a key file: the bot needs SSH_KEY_PATH."
    )


def _confirm_image(s: IntakeState, e: ConfirmImage, catalog: Catalog, out: Outcome) -> None:
    s.image.chosen = s.image.default
    s.image.overridden = False
    out.notes.append(f"Image confirmed: `{s.image.default}`.")


def _override_image(s: IntakeState, e: OverrideImage, catalog: Catalog, out: Outcome) -> None:
    ref = e.ref.strip()
    problem = check_image_ref(ref)
    if problem:
        out.errors.append(problem)
        return
    s.image.chosen = ref
    s.image.overridden = ref != s.image.default
    out.notes.append(f"Image set to `{ref}`.")


def _set_root(s: IntakeState, e: SetRoot, catalog: Catalog, out: Outcome) -> None:
    action = action_of(s, catalog)
    role = ROLE_ALIASES.get(e.role, e.role)
    if role not in ROOT_ROLES:
        out.errors.append(f"Unknown dataset root `{e.role}`. Roots are: {', '.join(ROOT_ROLES)}.")
        return
    if role not in action.roots:
        if action.roots:
            out.errors.append(
                f"{s.model} {s.action} has no `{role}` root; it takes: {', '.join(action.roots)}. "
                "Or give exact spec keys."
            )
        else:
            keys = ", ".join(f"`{i.key}`" for i in action.inputs) or "(none)"
            out.errors.append(
                f"{s.model} {s.action} has no root-mode convention; give exact spec keys instead: {keys}."
            )
        return
    problem = check_input_path(platform_of(s, catalog), e.path)
    if problem:
        out.errors.append(problem)
        return
    s.roots[role] = e.path
    expanded = ", ".join(
        f"`{k}={t.replace('{root}', e.path.rstrip('/') or '/')}`" for k, t in action.roots[role].items()
    )
    out.notes.append(f"{role} root set; it maps to {expanded}.")


def _set_spec_input(s: IntakeState, e: SetSpecInput, catalog: Catalog, out: Outcome) -> None:
    action = action_of(s, catalog)
    if action.input(e.key) is None:
        keys = ", ".join(f"`{i.key}`" for i in action.inputs) or "(none)"
        out.errors.append(f"`{e.key}` is not a dataset input of {s.model} {s.action}. Its inputs: {keys}.")
        return
    problem = check_input_path(platform_of(s, catalog), e.path)
    if problem:
        out.errors.append(problem)
        return
    s.spec_inputs[e.key] = e.path
    out.notes.append(f"`{e.key}` = `{e.path}`.")


def _set_results(s: IntakeState, e: SetResults, catalog: Catalog, out: Outcome) -> None:
    problem = check_input_path(platform_of(s, catalog), e.uri)
    if problem:
        out.errors.append(problem)
        return
    s.results_uri = e.uri
    out.notes.append(f"Results go to `{e.uri}`.")


def _set_compute(s: IntakeState, e: SetCompute, catalog: Catalog, out: Outcome) -> None:
    platform = platform_of(s, catalog)
    if e.field not in ("num_gpus", "num_nodes"):
        out.errors.append(f"Unknown compute field `{e.field}`; use num_gpus or num_nodes.")
        return
    if e.field == "num_nodes" and e.value != 1 and "num_nodes" not in compute_fields(s, catalog):
        out.errors.append(f"{s.model} runs on one node; num_nodes must be 1.")
        return
    limit = None
    if platform:
        limit = platform.resources.max_num_gpus_per_node if e.field == "num_gpus" else platform.resources.max_num_nodes
    if e.value <= 0 or (limit is not None and e.value > limit):
        where = f" on {platform.display_name}" if platform else ""
        unit = "GPUs per node" if e.field == "num_gpus" else "nodes"
        bound = f"1–{limit}" if limit is not None else "at least 1"
        out.errors.append(f"{e.field} must be {bound} {unit}{where}; got {e.value}.")
        return
    s.compute[e.field] = e.value
    out.notes.append(f"{e.field} = {e.value}.")


def _accept_compute_defaults(s: IntakeState, e: AcceptComputeDefaults, catalog: Catalog, out: Outcome) -> None:
    for name, value in compute_defaults(s, catalog).items():
        if name not in s.compute:
            s.compute[name] = value
            out.notes.append(f"{name} = {value} (platform default).")
    if not out.notes:
        out.notes.append("Compute shape already set.")


def _confirm_mounted(s: IntakeState, e: ConfirmMounted, catalog: Catalog, out: Outcome) -> None:
    paths = [p for p in mounted_paths(s, catalog) if p not in s.mount_confirmations]
    if not paths:
        out.errors.append(
            "No path here needs a mount confirmation: s3:// URIs and paths on SLURM or local Docker are checked directly."
        )
        return
    for path in paths:
        s.mount_confirmations[path] = Confirmation(by=e.by, at=e.at)
    out.notes.append(
        "Recorded that "
        + ", ".join(f"`{p}`" for p in paths)
        + f" are mounted in the job environment (confirmed by <@{e.by}>)."
    )


def _cancel(s: IntakeState, e: Cancel, catalog: Catalog, out: Outcome) -> None:
    s.status = "cancelled"
    out.notes.append("Intake cancelled. Nothing was created.")


_HANDLERS = {
    ChoosePlatform: _choose_platform,
    SetMonitoring: _set_monitoring,
    SetNotify: _set_notify,
    SetRetry: _set_retry,
    CredentialsStored: _credentials_stored,
    UseSshAgent: _use_ssh_agent,
    ConfirmImage: _confirm_image,
    OverrideImage: _override_image,
    SetRoot: _set_root,
    SetSpecInput: _set_spec_input,
    SetResults: _set_results,
    SetCompute: _set_compute,
    AcceptComputeDefaults: _accept_compute_defaults,
    ConfirmMounted: _confirm_mounted,
    Cancel: _cancel,
}


def apply_all(state: IntakeState, events: list[Event], catalog: Catalog, now: float | None = None) -> Outcome:
    """Apply events in order; each refused one adds its error and changes nothing.

    A compute answer that gives only some fields (`num_gpus=8`) keeps the
    platform default for the others, and says so: the person answered the
    compute question, and nothing is left half-asked.
    """
    total = Outcome(state)
    shaped = False
    for event in events:
        step = apply(total.state, event, catalog, now)
        total.state = step.state
        total.notes += step.notes
        total.errors += step.errors
        shaped = shaped or (isinstance(event, SetCompute) and not step.errors)
    if shaped and platform_of(total.state, catalog) is not None:
        filled = _fill_compute_defaults(total.state, catalog, now)
        if filled is not None:
            total.state = filled.state
            total.notes += filled.notes
    return total


def _fill_compute_defaults(state: IntakeState, catalog: Catalog, now: float | None) -> Outcome | None:
    pending = unset_compute_defaults(state, catalog)
    if not pending or not any(f in state.compute for f in compute_fields(state, catalog)):
        return None  # nothing left to fill, or no field of this model's shape was given
    out = apply(state, AcceptComputeDefaults(), catalog, now)
    if out.errors:
        return None
    out.notes = [f"{k} = {v} (platform default; reply `{k}=<n>` to change it)." for k, v in pending.items()]
    return out
