"""The intake's live state: one value per launch thread, serialised as JSON.

Credential *values* never enter the state. It records only which credential
names are set (with a keyed fingerprint, so a changed value can be noticed);
values live encrypted in the store.
"""

from __future__ import annotations

import secrets as _random
import time
from enum import Enum
from typing import Literal

from pydantic import BaseModel, Field

from taobot.catalog import Catalog, find_action, find_model, resolve_image

IntakeStatus = Literal["collecting", "complete", "cancelled", "launched"]
# What the thread launches: one job, an AutoML search (trials), or a multi-stage workflow (stages).
IntakeKind = Literal["launch", "automl", "workflow"]
# Statuses after which no answer changes the intake any more.
CLOSED_STATUSES = ("cancelled", "launched")


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
    access: str | None = None  # what pulling the default needs, when not everyone can (from the catalog)
    chosen: str | None = None  # set once the person confirmed the default or gave an override
    overridden: bool = False


class Confirmation(BaseModel):
    by: str
    at: float


class Approval(BaseModel):
    """A second person's approval of a launch the policy holds back, for exactly the inputs they saw."""

    by: str
    at: float
    fingerprint: str  # gate.input_fingerprint of the state approved
    reason: str = ""  # why the policy asked for it, as it stood then


class RetryPending(BaseModel):
    """A *Retry* under way: the failed launch it retries, for exactly the inputs that launch had."""

    of: str  # the launch id being retried
    fingerprint: str  # gate.input_fingerprint of the inputs: a launch from other inputs is no retry
    automatic: bool = False  # started by `retry=infra:N`, not by a click
    by: str
    at: float


class RelaunchBase(BaseModel):
    """A relaunch in this thread: the launch it follows and that launch's answers, so the card shows what changed."""

    after: str  # the launch id it follows
    answers: dict[str, str]  # summary.answer_values of the state that launch ran with


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
    kind: IntakeKind = "launch"
    platform: str | None = None
    monitor: bool | None = None
    interval_minutes: int | None = None
    notify_dm: bool = False  # the job's end also goes to the owner by DM
    ssh_agent: bool = False
    credentials: dict[str, str] = Field(default_factory=dict)  # name -> fingerprint, never the value
    image: ImageChoice
    roots: dict[str, str] = Field(default_factory=dict)  # role -> root path
    spec_inputs: dict[str, str] = Field(default_factory=dict)  # exact spec key -> path, as given
    results_uri: str | None = None
    compute: dict[str, int] = Field(default_factory=dict)  # num_gpus, num_nodes
    mount_confirmations: dict[str, Confirmation] = Field(default_factory=dict)
    preflight: PreflightRecord | None = None
    approval: Approval | None = None  # when the operator's policy asks for one (gate condition 8)
    retry_infra: int = 0  # `retry=infra:N`: an infrastructure failure retries itself up to N times (0: off)
    retry_pending: RetryPending | None = None  # a retry's preflight is running; its launch links to the failed one
    relaunch: RelaunchBase | None = None  # set by a relaunch: what the previous launch ran with
    status: IntakeStatus = "collecting"
    card_ts: str | None = None
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)
    # The store row version this state was read at: a write from an older read is refused (compare-and-swap).
    version: int = 0


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
        image=ImageChoice(default=resolved.image, source=resolved.source, access=resolved.access),
    )
