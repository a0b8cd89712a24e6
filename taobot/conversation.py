"""The launch intake as a pure state machine.

`apply(state, event, catalog)` returns the new state plus what to tell the
person; `next_step(state, catalog)` says what to ask next; `missing_items`
lists everything still missing with a concrete example. Nothing here
touches Slack, the database or the network: the Slack listeners, the
console and the tests all drive the same functions.

Credential *values* never enter this module. The state records only which
credential names are set (with a keyed fingerprint, so a changed value can
be noticed); values live encrypted in the store.
"""

from __future__ import annotations

import html
import re
import secrets as _random
import shlex
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Literal

from pydantic import BaseModel, Field

from taobot.catalog import (
    ROOT_ROLES,
    Action,
    Catalog,
    Condition,
    Credential,
    Model,
    Platform,
    find_action,
    find_model,
    find_platform,
    resolve_image,
)
from taobot.errors import UnknownNameError
from taobot.secrets import looks_like_secret

MAX_REPLY_CHARS = 4000
MIN_INTERVAL, MAX_INTERVAL = 1, 60
INTERVAL_ADVICE = "1–2 min for smoke tests, 5 for normal training, 10–15 for long runs"
ROLE_ALIASES = {
    "train": "train",
    "train_root": "train",
    "eval": "eval",
    "eval_root": "eval",
    "val": "eval",
    "val_root": "eval",
    "calibration": "calibration",
    "calibration_root": "calibration",
    "calib": "calibration",
}
GPU_KEYS = ("num_gpus", "gpus")
NODE_KEYS = ("num_nodes", "nodes")
RESULT_KEYS = ("results", "results_dir", "results_uri")


class Step(str, Enum):
    PLATFORM = "platform"
    MONITORING = "monitoring"
    CREDENTIALS = "credentials"
    IMAGE = "image"
    DATASETS = "datasets"
    COMPUTE = "compute"
    COMPLETE = "complete"


STEP_ORDER = [Step.PLATFORM, Step.MONITORING, Step.CREDENTIALS, Step.IMAGE, Step.DATASETS, Step.COMPUTE]


class ImageChoice(BaseModel):
    default: str
    source: str
    chosen: str | None = None  # set once the person confirmed the default or gave an override
    overridden: bool = False


class Confirmation(BaseModel):
    by: str
    at: float


class PreflightRecord(BaseModel):
    """The last preflight of this thread, tied to the inputs it checked."""

    status: Literal["running", "passed", "failed"]
    fingerprint: str  # gate.input_fingerprint of the state it checked
    results: list[dict] = Field(default_factory=list)  # CheckResult.to_dict() items
    by: str
    started_at: float
    finished_at: float | None = None
    card_ts: str | None = None


class IntakeState(BaseModel):
    """Everything the intake knows about one launch thread. Serialised as JSON."""

    id: str
    channel: str
    thread_ts: str | None = None
    owner: str
    model: str
    action: str
    platform: str | None = None
    monitor: bool | None = None
    interval_minutes: int | None = None
    ssh_agent: bool = False
    credentials: dict[str, str] = Field(default_factory=dict)  # name -> fingerprint, never the value
    image: ImageChoice
    roots: dict[str, str] = Field(default_factory=dict)  # role -> root path
    spec_inputs: dict[str, str] = Field(default_factory=dict)  # exact spec key -> path, as given
    results_uri: str | None = None
    compute: dict[str, int] = Field(default_factory=dict)  # num_gpus, num_nodes
    mount_confirmations: dict[str, Confirmation] = Field(default_factory=dict)
    preflight: PreflightRecord | None = None
    status: Literal["collecting", "complete", "cancelled", "launched"] = "collecting"
    card_ts: str | None = None
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)


def new_intake_id() -> str:
    return _random.token_hex(4)


def start_intake(
    catalog: Catalog, model_name: str, action_name: str, owner: str, channel: str, thread_ts: str | None = None
) -> IntakeState:
    """A fresh intake; raises UnknownNameError listing what exists."""
    model = find_model(catalog, model_name)
    action = find_action(model, action_name or "train")
    resolved = resolve_image(catalog, model, action)
    return IntakeState(
        id=new_intake_id(),
        channel=channel,
        thread_ts=thread_ts,
        owner=owner,
        model=model.name,
        action=action.name,
        image=ImageChoice(default=resolved.image, source=resolved.source),
    )


# --------------------------------------------------------------------------- events


@dataclass(frozen=True)
class ChoosePlatform:
    name: str


@dataclass(frozen=True)
class SetMonitoring:
    enabled: bool | None = None
    interval: int | None = None


@dataclass(frozen=True)
class CredentialsStored:
    fingerprints: dict[str, str]  # name -> fingerprint; values went to the store


@dataclass(frozen=True)
class UseSshAgent:
    enabled: bool = True


@dataclass(frozen=True)
class ConfirmImage:
    pass


@dataclass(frozen=True)
class OverrideImage:
    ref: str


@dataclass(frozen=True)
class SetRoot:
    role: str
    path: str


@dataclass(frozen=True)
class SetSpecInput:
    key: str
    path: str


@dataclass(frozen=True)
class SetResults:
    uri: str


@dataclass(frozen=True)
class SetCompute:
    field: str  # num_gpus or num_nodes
    value: int


@dataclass(frozen=True)
class AcceptComputeDefaults:
    pass


@dataclass(frozen=True)
class ConfirmMounted:
    """The person vouches that every unverifiable path is mounted in the job environment."""

    by: str
    at: float


@dataclass(frozen=True)
class Cancel:
    pass


Event = (
    ChoosePlatform
    | SetMonitoring
    | CredentialsStored
    | UseSshAgent
    | ConfirmImage
    | OverrideImage
    | SetRoot
    | SetSpecInput
    | SetResults
    | SetCompute
    | AcceptComputeDefaults
    | ConfirmMounted
    | Cancel
)


@dataclass
class Outcome:
    state: IntakeState
    notes: list[str] = field(default_factory=list)  # what changed, for a short reply
    errors: list[str] = field(default_factory=list)  # what was refused and what is expected

    @property
    def changed(self) -> bool:
        return bool(self.notes)


# --------------------------------------------------------------------------- catalog views


def model_of(state: IntakeState, catalog: Catalog) -> Model:
    return find_model(catalog, state.model)


def action_of(state: IntakeState, catalog: Catalog) -> Action:
    return find_action(model_of(state, catalog), state.action)


def platform_of(state: IntakeState, catalog: Catalog) -> Platform | None:
    return find_platform(catalog, state.platform) if state.platform else None


@dataclass(frozen=True)
class CredentialNeed:
    credential: Credential
    reason: str  # why it is needed: "platform", "model", "s3" or a group name

    @property
    def name(self) -> str:
        return self.credential.name


def dataset_inputs(state: IntakeState, catalog: Catalog) -> dict[str, str]:
    """Concrete spec key -> path: roots expanded by the model's conventions, then exact keys on top."""
    action = action_of(state, catalog)
    mapping: dict[str, str] = {}
    for role, root in state.roots.items():
        for key, template in action.roots.get(role, {}).items():
            mapping[key] = template.replace("{root}", root.rstrip("/") or "/")
    mapping.update(state.spec_inputs)
    return mapping


def uses_s3(state: IntakeState, catalog: Catalog) -> bool:
    uris = list(dataset_inputs(state, catalog).values())
    if state.results_uri:
        uris.append(state.results_uri)
    return any(u.startswith("s3://") for u in uris)


def credential_needs(state: IntakeState, catalog: Catalog) -> list[CredentialNeed]:
    """Every credential this launch requires, in the order they are asked."""
    platform = platform_of(state, catalog)
    if platform is None:
        return []
    needs = [CredentialNeed(catalog.credentials[n], "platform") for n in platform.required_credentials]
    for group in platform.credential_groups:
        member = group.preferred
        if state.ssh_agent and "SSH_AUTH_SOCK" in group.one_of:
            member = "SSH_AUTH_SOCK"
        present = [m for m in group.one_of if m in state.credentials]
        needs.append(CredentialNeed(catalog.credentials[present[0] if present else member], group.name))
    for name in model_of(state, catalog).credentials:
        needs.append(CredentialNeed(catalog.credentials[name], "model"))
    if uses_s3(state, catalog):
        needs += [CredentialNeed(catalog.credentials[n], "s3") for n in catalog.s3_required]
    seen: set[str] = set()
    return [n for n in needs if not (n.name in seen or seen.add(n.name))]


def optional_credentials(state: IntakeState, catalog: Catalog) -> list[tuple[Credential, str]]:
    """Optional credentials whose condition applies now, with the wording of when to give them."""
    platform = platform_of(state, catalog)
    if platform is None:
        return []
    required = {n.name for n in credential_needs(state, catalog)}
    s3 = uses_s3(state, catalog)
    model = model_of(state, catalog)
    out: list[tuple[Credential, str]] = []
    for opt in platform.optional_credentials:
        applies = (
            opt.only_when is Condition.ALWAYS
            or (opt.only_when is Condition.S3_URI and s3)
            or (opt.only_when is Condition.MODEL_REQUIRES and opt.name in model.credentials)
        )
        if applies and opt.name not in required:
            out.append((catalog.credentials[opt.name], opt.when_text))
    if s3:
        for name in catalog.s3_optional:
            if name not in required and all(c.name != name for c, _ in out):
                out.append((catalog.credentials[name], "your S3 store needs it"))
    return out


def missing_credentials(state: IntakeState, catalog: Catalog) -> list[CredentialNeed]:
    return [n for n in credential_needs(state, catalog) if n.name not in state.credentials]


def missing_inputs(state: IntakeState, catalog: Catalog) -> list[str]:
    mapped = dataset_inputs(state, catalog)
    return [i.key for i in action_of(state, catalog).required_inputs if i.key not in mapped]


def compute_fields(state: IntakeState, catalog: Catalog) -> list[str]:
    fields = ["num_gpus"]
    if model_of(state, catalog).nodes_key:
        fields.append("num_nodes")
    return fields


def compute_defaults(state: IntakeState, catalog: Catalog) -> dict[str, int]:
    platform = platform_of(state, catalog)
    res = platform.resources if platform else None
    defaults = {"num_gpus": res.num_gpus if res else 1, "num_nodes": res.num_nodes if res else 1}
    return {f: defaults[f] for f in compute_fields(state, catalog)}


def step_done(state: IntakeState, catalog: Catalog, step: Step) -> bool:
    if step is Step.PLATFORM:
        return state.platform is not None
    if step is Step.MONITORING:
        return state.monitor is not None and (state.monitor is False or state.interval_minutes is not None)
    if step is Step.CREDENTIALS:
        return state.platform is not None and not missing_credentials(state, catalog)
    if step is Step.IMAGE:
        return state.image.chosen is not None
    if step is Step.DATASETS:
        return not missing_inputs(state, catalog)
    if step is Step.COMPUTE:
        return all(f in state.compute for f in compute_fields(state, catalog))
    return False


def next_step(state: IntakeState, catalog: Catalog) -> Step:
    for step in STEP_ORDER:
        if not step_done(state, catalog, step):
            return step
    return Step.COMPLETE


# --------------------------------------------------------------------------- validation

_IMAGE_REF = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]+)?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$"
)


def check_image_ref(ref: str) -> str | None:
    """Why this is not a usable image reference, or None."""
    if not ref.strip():
        return "The image override is empty. Give a full reference, e.g. `image=nvcr.io/nvidia/tao/tao-toolkit:6.0.0-pyt`."
    if len(ref) > 255 or not _IMAGE_REF.match(ref):
        return (
            f"`{ref}` is not a valid image reference. Expected `registry/path/name:tag` "
            "(lowercase path, optional `@sha256:<digest>`), e.g. `image=nvcr.io/nvidia/tao/tao-toolkit:6.0.0-pyt`."
        )
    return None


def path_kind(platform: Platform, value: str) -> tuple[str | None, str | None]:
    """Classify a dataset or result path for this platform: (kind, error).

    kind is "s3", "absolute" (verifiable from the platform) or "mounted"
    (cannot be verified from the bot's host; needs the person's word).
    """
    examples = ", ".join(f"`{e}`" for e in platform.dataset_examples[:2])
    if any(ch in value for ch in "\n\r\t\0"):
        return None, "Paths cannot contain tabs, newlines or NUL characters."
    if value.startswith("s3://"):
        bucket = value[5:].split("/", 1)[0]
        if not bucket:
            return None, f"`{value}` has no bucket. Expected `s3://bucket/path`."
        return "s3", None
    scheme = re.match(r"^([a-z][a-z0-9+.-]*)://(.*)$", value)
    if scheme:
        name, rest = scheme.group(1), scheme.group(2)
        if name in platform.path_schemes:
            if not rest.startswith("/"):
                return None, f"`{value}` must hold an absolute path, e.g. `{name}:///lustre/...`."
            return "absolute", None
        if name == "file":
            return None, (
                f"`{value}` is a path on the bot's host; {platform.display_name} jobs cannot read it. "
                f"Expected: {examples}."
            )
        return None, f"`{name}://` paths are not supported on {platform.display_name}. Expected: {examples}."
    if value.startswith("/"):
        if "absolute" in platform.path_forms:
            return "absolute", None
        return "mounted", None
    return None, f"`{value}` is not an absolute path. Expected: {examples}."


def _check_input_path(platform: Platform | None, value: str) -> str | None:
    if platform is None:
        if not (value.startswith(("/", "s3://")) or "://" in value):
            return f"`{value}` is not an absolute path or URI."
        return None
    return path_kind(platform, value)[1]


# --------------------------------------------------------------------------- transitions


def apply(state: IntakeState, event: Event, catalog: Catalog, now: float | None = None) -> Outcome:
    """Apply one event. Refused events leave the state exactly as it was."""
    if state.status in ("cancelled", "launched"):
        return Outcome(state, errors=[f"This intake is {state.status}; start a new one with `/tao launch {state.model}`."])
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
        "Using your SSH agent: the bot needs SSH_AUTH_SOCK." if e.enabled else "Using a key file: the bot needs SSH_KEY_PATH."
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
    problem = _check_input_path(platform_of(s, catalog), e.path)
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
    problem = _check_input_path(platform_of(s, catalog), e.path)
    if problem:
        out.errors.append(problem)
        return
    s.spec_inputs[e.key] = e.path
    out.notes.append(f"`{e.key}` = `{e.path}`.")


def _set_results(s: IntakeState, e: SetResults, catalog: Catalog, out: Outcome) -> None:
    problem = _check_input_path(platform_of(s, catalog), e.uri)
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


def mounted_paths(state: IntakeState, catalog: Catalog) -> list[str]:
    """Dataset/result paths the platform cannot verify from the bot's host (they need the person's word)."""
    platform = platform_of(state, catalog)
    if platform is None:
        return []
    values = list(dataset_inputs(state, catalog).values()) + ([state.results_uri] if state.results_uri else [])
    return [v for v in dict.fromkeys(values) if path_kind(platform, v)[0] == "mounted"]


def _confirm_mounted(s: IntakeState, e: ConfirmMounted, catalog: Catalog, out: Outcome) -> None:
    paths = [p for p in mounted_paths(s, catalog) if p not in s.mount_confirmations]
    if not paths:
        out.errors.append("No path here needs a mount confirmation: s3:// URIs and paths on SLURM or local Docker are checked directly.")
        return
    for path in paths:
        s.mount_confirmations[path] = Confirmation(by=e.by, at=e.at)
    out.notes.append("Recorded that " + ", ".join(f"`{p}`" for p in paths) + f" are mounted in the job environment (confirmed by <@{e.by}>).")


def _cancel(s: IntakeState, e: Cancel, catalog: Catalog, out: Outcome) -> None:
    s.status = "cancelled"
    out.notes.append("Intake cancelled. Nothing was created.")


_HANDLERS = {
    ChoosePlatform: _choose_platform,
    SetMonitoring: _set_monitoring,
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
    """Apply events in order; each refused one adds its error and changes nothing."""
    total = Outcome(state)
    for event in events:
        step = apply(total.state, event, catalog, now)
        total.state = step.state
        total.notes += step.notes
        total.errors += step.errors
    return total


# --------------------------------------------------------------------------- thread replies

WORD_COMMANDS = {
    "cancel": "cancel",
    "help": "help",
    "status": "status",
    "detach": "detach",
    "stop monitoring": "detach",
    "attach": "attach",
    "preflight": "preflight",
    "run preflight": "preflight",
    "launch": "launch",
    "use default image": "use_image",
    "use image": "use_image",
    "use default": "use_image",
    "defaults": "compute_defaults",
    "use defaults": "compute_defaults",
    "agent": "ssh_agent",
    "i use an ssh agent": "ssh_agent",
    "confirm mounted": "confirm_mounted",
    "confirm mounts": "confirm_mounted",
    "mounted": "confirm_mounted",
    "i use an agent": "ssh_agent",
    "ssh agent": "ssh_agent",
}
_TRUE = {"yes", "y", "on", "true", "1"}
_FALSE = {"no", "n", "off", "false", "0"}


@dataclass
class ParsedReply:
    events: list[Event] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    command: str | None = None
    secret_warning: str | None = None


def slack_plain_text(text: str) -> str:
    """Undo Slack's message encoding: <url|label> links, &amp; escapes, smart quotes."""
    text = re.sub(r"<(?:mailto:)?([^<>|]+)\|([^<>]+)>", r"\2", text)
    text = re.sub(r"<([^<>@#!][^<>]*)>", r"\1", text)
    text = html.unescape(text)
    return text.translate(str.maketrans({"“": '"', "”": '"', "‘": "'", "’": "'"}))


def expected_shape(state: IntakeState | None = None) -> str:
    return (
        "Reply with `key=value` pairs, several per message, e.g. "
        "`platform=slurm monitor=yes interval=5`, `image=nvcr.io/nvidia/tao/tao-toolkit:6.0.0-pyt`, "
        "`train=/lustre/.../train`, `custom.train_dataset.annotation_path=/lustre/.../annotations.json`, "
        "`num_gpus=4`; or one word: `cancel`, `help`."
    )


def parse_reply(text: str, state: IntakeState, catalog: Catalog) -> ParsedReply:
    """Turn a thread reply into events. Never stores or echoes a pasted secret."""
    text = slack_plain_text(text).strip()
    reply = ParsedReply()
    if len(text) > MAX_REPLY_CHARS:
        reply.errors.append(
            f"That reply is {len(text)} characters; the most taobot reads is {MAX_REPLY_CHARS}. Send the values in smaller replies."
        )
        return reply
    secret_names = frozenset(n for n, c in catalog.credentials.items() if c.secret)
    reason = looks_like_secret(text, secret_names)
    if reason:
        reply.secret_warning = (
            f":warning: That message looks like it contains {reason}. taobot did not read or store it. "
            "Delete the message, rotate the credential if it was real, and enter credentials with the "
            "*Enter credentials* button, which opens a private form."
        )
        return reply
    word = " ".join(text.lower().split()).rstrip(".!")
    if word in WORD_COMMANDS:
        reply.command = WORD_COMMANDS[word]
        return reply
    try:
        tokens = shlex.split(text, posix=True)
    except ValueError:
        reply.errors.append("Unbalanced quotes in that reply. " + expected_shape())
        return reply
    if not tokens or not all("=" in t for t in tokens):
        bad = next((t for t in tokens if "=" not in t), text)
        reply.errors.append(f"I could not read `{bad[:80]}`. " + expected_shape())
        return reply
    model = model_of(state, catalog)
    for token in tokens:
        key, _, value = token.partition("=")
        key, value = key.strip(), value.strip()
        event, error = _event_for(key, value, model, catalog)
        if error:
            reply.errors.append(error)
        elif event is not None:
            reply.events.append(event)
    return reply


def _parse_int(key: str, value: str) -> tuple[int | None, str | None]:
    try:
        return int(value), None
    except ValueError:
        return None, f"`{key}` needs a whole number, e.g. `{key}=4`; got `{value}`."


def _event_for(key: str, value: str, model: Model, catalog: Catalog) -> tuple[Event | None, str | None]:
    lower = key.lower()
    if not key:
        return None, "A `=value` without a key. " + expected_shape()
    if key.upper() in catalog.credentials:
        return None, (
            f"{key.upper()} is a credential; enter it with the *Enter credentials* button (a private form), "
            "not in the thread."
        )
    if lower == "platform":
        return ChoosePlatform(value), None
    if lower in ("monitor", "monitoring", "long_running", "long_running_enabled"):
        if value.lower() in _TRUE:
            return SetMonitoring(enabled=True), None
        if value.lower() in _FALSE:
            return SetMonitoring(enabled=False), None
        return None, f"`{key}` takes yes or no; got `{value}`."
    if lower in ("interval", "status_interval", "status_interval_minutes"):
        number, err = _parse_int(key, value.removesuffix("m").removesuffix("min"))
        return (SetMonitoring(interval=number), None) if err is None else (None, err)
    if lower in ("image", "container_image"):
        return OverrideImage(value), None
    if lower in ("agent", "ssh_agent"):
        return UseSshAgent(value.lower() in _TRUE), None
    if lower in ROLE_ALIASES:
        if not value:
            return None, f"`{key}` needs a path, e.g. `{key}=/data/{model.name}/train`."
        return SetRoot(ROLE_ALIASES[lower], value), None
    if lower in RESULT_KEYS:
        return SetResults(value), None
    if lower in GPU_KEYS or key == model.gpus_key:
        number, err = _parse_int(key, value)
        return (SetCompute("num_gpus", number), None) if err is None else (None, err)
    if lower in NODE_KEYS or (model.nodes_key and key == model.nodes_key):
        number, err = _parse_int(key, value)
        return (SetCompute("num_nodes", number), None) if err is None else (None, err)
    if "." in key or "[" in key or "-" in key:
        if not value:
            return None, f"`{key}` needs a path."
        return SetSpecInput(key, value), None
    known = "platform, monitor, interval, image, train, eval, calibration, results, num_gpus, num_nodes, or a spec key"
    return None, f"Unknown key `{key}`. Known keys: {known}."


# --------------------------------------------------------------------------- summaries


@dataclass(frozen=True)
class MissingItem:
    step: Step
    label: str
    example: str


def missing_items(state: IntakeState, catalog: Catalog) -> list[MissingItem]:
    """Every missing input with a concrete example, in the order they are asked."""
    items: list[MissingItem] = []
    platform = platform_of(state, catalog)
    if platform is None:
        names = ", ".join(catalog.platforms)
        items.append(MissingItem(Step.PLATFORM, "Execution platform", f"one of {names} — `platform=slurm`"))
    if not step_done(state, catalog, Step.MONITORING):
        items.append(
            MissingItem(
                Step.MONITORING,
                "Monitoring in this thread and status interval",
                f"`monitor=yes interval=5` (default yes, 5 min; {INTERVAL_ADVICE}) or `monitor=no`",
            )
        )
    for need in missing_credentials(state, catalog):
        items.append(
            MissingItem(
                Step.CREDENTIALS,
                f"Credential {need.name}",
                f"{need.credential.description} How to get it: {need.credential.how_to_get} "
                "(enter it with *Enter credentials*, never in the thread)",
            )
        )
    if state.image.chosen is None:
        items.append(
            MissingItem(
                Step.IMAGE,
                f"Container image for {state.model}/{state.action}",
                f"default=`{state.image.default}` — press *Use default* or reply `image=<registry/name:tag>`",
            )
        )
    missing = missing_inputs(state, catalog)
    if missing:
        items.append(MissingItem(Step.DATASETS, "Dataset inputs", dataset_help(state, catalog, missing)))
    for name in compute_fields(state, catalog):
        if name not in state.compute:
            default = compute_defaults(state, catalog)[name]
            limit = ""
            if platform:
                cap = platform.resources.max_num_gpus_per_node if name == "num_gpus" else platform.resources.max_num_nodes
                limit = f", at most {cap}"
            items.append(MissingItem(Step.COMPUTE, f"Compute: {name}", f"`{name}={default}` (default {default}{limit})"))
    return items


def _example_root(platform: Platform | None, model: str, role: str) -> str:
    if platform is None:
        return f"/data/tao/{model}/{role}"
    if platform.name == "slurm":
        return f"/lustre/fsw/<team>/users/<user>/data/{model}/{role}"
    if "absolute" in platform.path_forms:
        return f"/data/tao/{model}/{role}"
    return f"s3://my-bucket/{model}/{role}"


def dataset_help(state: IntakeState, catalog: Catalog, missing: list[str] | None = None) -> str:
    """Both dataset modes with examples for this model, action and platform."""
    action = action_of(state, catalog)
    platform = platform_of(state, catalog)
    missing = missing if missing is not None else missing_inputs(state, catalog)
    lines = []
    if action.roots:
        roots = " ".join(f"`{role}={_example_root(platform, state.model, role)}`" for role in action.roots)
        expands = "; ".join(
            f"{role} → " + ", ".join(f"`{k}={t}`" for k, t in keys.items()) for role, keys in action.roots.items()
        )
        lines.append(f"Root mode: {roots} (expands to {expands.replace('{root}', '<root>')})")
    else:
        lines.append(f"Root mode: not defined for {state.model} {state.action}; use exact spec keys.")
    example_root = _example_root(platform, state.model, "train")
    spec = " ".join(f"`{k}={example_root}/...`" for k in missing[:3])
    lines.append(f"Spec mode (exact keys, kept as given): {spec}")
    lines.append("Still missing: " + ", ".join(f"`{k}`" for k in missing))
    if platform and platform.dataset_examples:
        lines.append(f"{platform.display_name} path forms: " + ", ".join(f"`{e}`" for e in platform.dataset_examples))
    return "\n".join(lines)


def may_act(state: IntakeState, user: str, admins: frozenset[str]) -> bool:
    return user == state.owner or user in admins


# --------------------------------------------------------------------------- credential values

_HOST = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
_VALUE_RULES: dict[str, tuple[re.Pattern[str], str]] = {
    "SLURM_USER": (re.compile(r"^[a-z_][a-z0-9_.-]{0,31}\$?$", re.IGNORECASE), "a login name such as `jdoe`"),
    "SLURM_HOSTNAME": (
        re.compile(rf"^{_HOST}(?::\d{{1,5}})?(?:\s*,\s*{_HOST}(?::\d{{1,5}})?)*$"),
        "host names, comma separated, each `host` or `host:port`",
    ),
    "SLURM_PARTITION": (re.compile(r"^[A-Za-z0-9_.-]+(?:,[A-Za-z0-9_.-]+)*$"), "a partition name or a comma-separated list"),
    "SLURM_ACCOUNT": (re.compile(r"^[A-Za-z0-9_.-]+$"), "an account name"),
    "SSH_KEY_PATH": (re.compile(r"^(?:/|~/)\S.*$"), "an absolute path on the bot's host, e.g. `/home/bot/.ssh/id_ed25519`"),
    "SSH_AUTH_SOCK": (re.compile(r"^/\S.*$"), "an absolute socket path"),
    "KUBECONFIG": (re.compile(r"^(?:/|~/)\S.*$"), "an absolute path on the bot's host"),
    "HOST_SSH_PATH": (re.compile(r"^(?:/|~/)\S.*$"), "an absolute path"),
    "SLURM_BASE_RESULTS_DIR": (re.compile(r"^(?:/|~/)\S.*$"), "an absolute path on the cluster"),
    "TAO_K8S_IMAGE_PULL_SECRET": (re.compile(r"^[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?$"), "a Secret name"),
    "TAO_K8S_NAMESPACE": (re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"), "a namespace name (lowercase, digits, -)"),
    "S3_ENDPOINT_URL": (re.compile(r"^https?://\S+$"), "an http(s) URL"),
    "SLURM_CPUS_PER_TASK": (re.compile(r"^[1-9]\d{0,3}$"), "a whole number of CPUs, e.g. 16"),
    "SLURM_TIME_HOURS": (re.compile(r"^\d+(\.\d+)?$"), "a number of hours, e.g. 4"),
    "SLURM_TIMEOUT_HOURS": (re.compile(r"^\d+(\.\d+)?$"), "a number of hours, e.g. 3.8"),
    "DOCKER_PULL_POLICY": (re.compile(r"^(always|missing|never)$"), "always, missing or never"),
    "DOCKER_AUTO_REMOVE": (re.compile(r"^(true|false)$", re.IGNORECASE), "true or false"),
    "DOCKER_HOST": (re.compile(r"^(unix|tcp|ssh|npipe)://\S+$"), "a daemon URL such as `unix:///var/run/docker.sock`"),
}


def check_credential_value(name: str, value: str) -> str | None:
    """Why this value cannot be right for the credential, or None. Never echoes the value."""
    if not value.strip():
        return f"{name} is empty."
    if any(ch in value for ch in "\n\r\0"):
        return f"{name} must be a single line."
    rule = _VALUE_RULES.get(name)
    if rule and not rule[0].match(value.strip()):
        return f"{name} should be {rule[1]}."
    return None
