"""Intents: what a person asked for, whatever they clicked, chose or typed.

The Slack listeners and the console translate a button, a select, a modal
submission, a `key=value` reply or a one-word command into one of these,
and the services act on it. The one table of commands is here: a button's
action id, a reply word and a console answer all name a command in
`COMMANDS`, so the three can never disagree about what a command does.

Command ids are also the Block Kit action ids of the buttons that send
them; they are stable, because cards posted by an older version keep
sending them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from taobot.intake.events import (
    AcceptComputeDefaults,
    Cancel,
    ChoosePlatform,
    ConfirmImage,
    Event,
    SetMonitoring,
    SetResults,
    SetRoot,
    SetSpecInput,
    UseSshAgent,
)


@dataclass(frozen=True)
class Answer:
    """Change the intake: events for the state machine, applied in order."""

    events: tuple[Event, ...]
    kind: str = "reply"  # what the event log calls it


@dataclass(frozen=True)
class SubmitCredentials:
    """Credential values from the private form. Values go to the encrypted store, never to the state."""

    values: Mapping[str, str] = field(repr=False)  # name -> value as typed


@dataclass(frozen=True)
class SubmitDatasets:
    """The datasets form: role roots, exact `spec.key=path` lines, a results location."""

    roots: Mapping[str, str]
    spec_lines: str = ""
    results: str = ""


@dataclass(frozen=True)
class ConfirmMounts:
    """The person vouches that the paths taobot cannot check are mounted where the job runs."""


@dataclass(frozen=True)
class UseTaobotKey:
    """Make (or reuse) the person's own SSH key for SLURM and show its public half with the install steps."""


@dataclass(frozen=True)
class TrustHostKey:
    """Trust, on first use, the login-node host key the last preflight showed (only when the operator allows it)."""


@dataclass(frozen=True)
class ShowHelp:
    pass


@dataclass(frozen=True)
class ShowStatus:
    pass


FormName = Literal["credentials", "settings", "image", "datasets"]


@dataclass(frozen=True)
class OpenForm:
    form: FormName


@dataclass(frozen=True)
class RunPreflight:
    pass


@dataclass(frozen=True)
class Launch:
    pass


@dataclass(frozen=True)
class Approve:
    """A second person (an admin or an approver of the policy) approves the launch for its current inputs."""


@dataclass(frozen=True)
class Detach:
    launch_id: str | None = None  # None: the thread's latest launch


@dataclass(frozen=True)
class Attach:
    launch_id: str | None = None


@dataclass(frozen=True)
class CancelJob:
    launch_id: str | None = None


@dataclass(frozen=True)
class Relaunch:
    """A new launch in the same thread, reusing every answer, with `changes` applied; a fresh preflight first.

    `changes` None: the *Relaunch* button (same inputs; the form of what to change opens). A tuple: typed as
    `relaunch key=value …` or submitted from that form, with `unreadable` the fields that could not be read.
    """

    launch_id: str | None = None
    changes: tuple[Event, ...] | None = None
    unreadable: tuple[str, ...] = ()
    fields: tuple[tuple[str, str], ...] = ()  # from the form: answer name -> value, read like a reply's `name=value`


@dataclass(frozen=True)
class Retry:
    """An infrastructure failure again: preflight afresh, then the same inputs as a new job linked to this one."""

    launch_id: str | None = None


Intent = (
    Answer
    | SubmitCredentials
    | SubmitDatasets
    | ConfirmMounts
    | UseTaobotKey
    | TrustHostKey
    | ShowHelp
    | ShowStatus
    | OpenForm
    | RunPreflight
    | Launch
    | Approve
    | Detach
    | Attach
    | CancelJob
    | Relaunch
    | Retry
)
LAUNCH_INTENTS = (Detach, Attach, CancelJob, Relaunch, Retry)  # act on a job, not on the intake's answers

# --------------------------------------------------------------------------- the one command table

MONITOR_YES = "monitor_yes"
MONITOR_NO = "monitor_no"
OPEN_CREDENTIALS = "open_credentials"
OPEN_SETTINGS = "open_settings"
USE_SSH_AGENT = "use_ssh_agent"
USE_TAOBOT_KEY = "use_taobot_key"
TRUST_HOST_KEY = "trust_host_key"
IMAGE_USE_DEFAULT = "image_use_default"
IMAGE_OVERRIDE = "image_override"
OPEN_DATASETS = "open_datasets"
COMPUTE_DEFAULTS = "compute_defaults"
CANCEL_INTAKE = "cancel_intake"
RUN_PREFLIGHT = "run_preflight"
CONFIRM_MOUNTED = "confirm_mounted"
LAUNCH = "launch"
APPROVE = "approve"
CANCEL_JOB = "cancel_job"
DETACH = "detach"
ATTACH = "attach"
RELAUNCH = "relaunch"
RETRY = "retry"
HELP = "help"
STATUS = "status"

COMMANDS: dict[str, Intent] = {
    # `monitor=yes` without an interval: the transition fills in the default, in one place.
    MONITOR_YES: Answer((SetMonitoring(enabled=True),), "monitoring"),
    MONITOR_NO: Answer((SetMonitoring(enabled=False),), "monitoring"),
    OPEN_CREDENTIALS: OpenForm("credentials"),
    OPEN_SETTINGS: OpenForm("settings"),
    USE_SSH_AGENT: Answer((UseSshAgent(True),), "ssh_agent"),
    USE_TAOBOT_KEY: UseTaobotKey(),
    TRUST_HOST_KEY: TrustHostKey(),
    IMAGE_USE_DEFAULT: Answer((ConfirmImage(),), "image_confirmed"),
    IMAGE_OVERRIDE: OpenForm("image"),
    OPEN_DATASETS: OpenForm("datasets"),
    COMPUTE_DEFAULTS: Answer((AcceptComputeDefaults(),), "compute_defaults"),
    CANCEL_INTAKE: Answer((Cancel(),), "cancel"),
    RUN_PREFLIGHT: RunPreflight(),
    CONFIRM_MOUNTED: ConfirmMounts(),
    LAUNCH: Launch(),
    APPROVE: Approve(),
    CANCEL_JOB: CancelJob(),
    DETACH: Detach(),
    ATTACH: Attach(),
    RELAUNCH: Relaunch(),
    RETRY: Retry(),
    HELP: ShowHelp(),
    STATUS: ShowStatus(),
}

# Choices carry a value: the select's action id and what the chosen option means.
PLATFORM_SELECT = "platform_select"
INTERVAL_SELECT = "interval_select"
CHOICES: dict[str, Callable[[str], Intent]] = {
    PLATFORM_SELECT: lambda value: Answer((ChoosePlatform(value),), "platform"),
    INTERVAL_SELECT: lambda value: Answer((SetMonitoring(True, int(value)),), "monitoring"),
}

# What a person may type as a whole reply, and the command it means.
WORDS: dict[str, str] = {
    "cancel": CANCEL_INTAKE,
    "help": HELP,
    "status": STATUS,
    "detach": DETACH,
    "stop monitoring": DETACH,
    "attach": ATTACH,
    "retry": RETRY,
    "preflight": RUN_PREFLIGHT,
    "run preflight": RUN_PREFLIGHT,
    "launch": LAUNCH,
    "approve": APPROVE,
    "approve launch": APPROVE,
    "approved": APPROVE,
    "use default image": IMAGE_USE_DEFAULT,
    "use image": IMAGE_USE_DEFAULT,
    "use default": IMAGE_USE_DEFAULT,
    "defaults": COMPUTE_DEFAULTS,
    "use defaults": COMPUTE_DEFAULTS,
    "agent": USE_SSH_AGENT,
    "i use an ssh agent": USE_SSH_AGENT,
    "i use an agent": USE_SSH_AGENT,
    "ssh agent": USE_SSH_AGENT,
    "taobot key": USE_TAOBOT_KEY,
    "use a taobot key": USE_TAOBOT_KEY,
    "use taobot key": USE_TAOBOT_KEY,
    "my taobot key": USE_TAOBOT_KEY,
    "trust host key": TRUST_HOST_KEY,
    "trust this host key": TRUST_HOST_KEY,
    "confirm mounted": CONFIRM_MOUNTED,
    "confirm mounts": CONFIRM_MOUNTED,
    "mounted": CONFIRM_MOUNTED,
}


def command_intent(command: str, launch_id: str | None = None) -> Intent | None:
    """The intent a command id means; launch commands carry the launch they act on."""
    intent = COMMANDS.get(command)
    if isinstance(intent, LAUNCH_INTENTS) and launch_id:
        return type(intent)(launch_id)
    return intent


def choice_intent(select: str, value: str) -> Intent | None:
    """The intent a select's chosen value means, or None for an unknown select or an unreadable value."""
    make = CHOICES.get(select)
    if make is None or not value:
        return None
    try:
        return make(value)
    except ValueError:
        return None


def dataset_form_events(form: SubmitDatasets) -> tuple[list[Event], dict[str, str]]:
    """The datasets form as events, and problems by field ("spec") for lines that cannot be read."""
    events: list[Event] = []
    problems: dict[str, str] = {}
    for role, path in form.roots.items():
        if path.strip():
            events.append(SetRoot(role, path.strip()))
    for line in form.spec_lines.splitlines():
        line = line.strip()
        if not line:
            continue
        key, sep, path = line.partition("=")
        if not sep or not key.strip() or not path.strip():
            problems["spec"] = f"Each line must be `spec.key=path`; could not read `{line[:80]}`."
            break
        events.append(SetSpecInput(key.strip(), path.strip()))
    if form.results.strip():
        events.append(SetResults(form.results.strip()))
    return events, problems
