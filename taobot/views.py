"""Views: what the services show, as typed values; `slack/` renders them to Block Kit, the console to text.

A view is computed once per render from the state and the catalog (the
intake card asks the catalog for what the launch needs exactly once), and
holds no Slack markup beyond the mrkdwn emphasis that both renderers read.
Redaction is not done here: the edge that sends (the Slack messenger, the
console) redacts once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from taobot.automl.views import ExperimentCard, ExperimentFinal
from taobot.catalog import Catalog, Credential, Platform
from taobot.gate import Gate, GateRules, compute_gate
from taobot.intake import (
    CredentialNeed,
    IntakeState,
    MissingItem,
    Step,
    action_of,
    credential_needs,
    dataset_help,
    dataset_inputs,
    extra_settings,
    missing_items,
    next_step,
    optional_credentials,
    platform_of,
    unset_compute_defaults,
)
from taobot.intake.summary import answer_values, changed_answers
from taobot.kube_profiles import KubeProfile
from taobot.launches import Launch
from taobot.progress import Progress
from taobot.review import Review
from taobot.stuck import Stuck
from taobot.triage import Triage
from taobot.workflows.views import PipelineCard


@dataclass(frozen=True)
class Reply:
    """A short message in the thread (or an ephemeral answer)."""

    text: str


@dataclass(frozen=True)
class IntakeFacts:
    """Where one intake stands, asked of the catalog once."""

    state: IntakeState
    step: Step
    platform: Platform | None
    needs: tuple[CredentialNeed, ...]
    optional: tuple[tuple[Credential, str], ...]  # optional credentials whose condition applies now
    settings: tuple[tuple[Credential, str], ...]  # optional settings that may be given any time (More settings)
    datasets: dict[str, str]


@dataclass(frozen=True)
class IntakeCard:
    """The one message per launch thread, updated in place."""

    facts: IntakeFacts
    missing: tuple[MissingItem, ...] = ()
    platforms: tuple[Platform, ...] = ()  # the choices, while the platform is asked
    default_interval: int = 5
    dataset_help: str = ""
    compute_defaults: dict[str, int] = field(default_factory=dict)  # defaults of the compute fields not given yet
    gate: Gate | None = None  # once the intake is complete
    launch: Launch | None = None  # once launched
    review: Review | None = None  # once preflight passed: what *Launch* will run, for how long, at what cost
    changes: tuple[tuple[str, str, str], ...] = ()  # a relaunch: (answer, before, now) since the launch it follows


@dataclass(frozen=True)
class IntakeDetail:
    """`status` for an intake that has no job yet."""

    facts: IntakeFacts
    now: float


@dataclass(frozen=True)
class PreflightCard:
    """One message per preflight run: a line per check, remediation under each failure."""

    intake_id: str
    platform: str
    results: tuple[dict, ...]
    running: str | None = None  # the stage being checked, while it runs
    passed: bool | None = None
    superseded: bool = False  # a newer preflight of the same thread replaced this one: no buttons
    approval: str | None = None  # passed, but the launch still waits for this approval (gate condition 8)


@dataclass(frozen=True)
class ChannelEntry:
    intake: IntakeState
    platform: str  # display name, or "—"
    launch: Launch | None


@dataclass(frozen=True)
class ChannelStatus:
    entries: tuple[ChannelEntry, ...]
    total: int
    now: float
    yours: bool = False  # asked in a DM: the asker's own launches, from every channel


@dataclass(frozen=True)
class HomeView:
    """A person's App Home: their own launches, running ones first."""

    user: str
    entries: tuple[ChannelEntry, ...]
    total: int
    now: float
    notice: str = ""  # the answer to a button pressed on the Home (done, or refused and why)


@dataclass(frozen=True)
class LaunchPosted:
    launch: Launch


@dataclass(frozen=True)
class StatusUpdate:
    launch: Launch
    log_lines: tuple[str, ...]
    now: float
    progress: Progress | None = None  # how far training is, from TAO's status file and the log
    stuck: tuple[Stuck, ...] = ()  # pending or silent past its threshold


@dataclass(frozen=True)
class FinalUpdate:
    launch: Launch
    log_lines: tuple[str, ...]
    cause: str | None  # an infrastructure cause found in the logs: the failure is likely retriable
    now: float
    triage: Triage | None = None  # why it failed: infrastructure, configuration or program, and the deciding line
    chain: int = 1  # this launch's place in its retry chain (1: the first launch, not a retry)
    retry_offered: bool = False  # the *Retry* button: an infrastructure failure, room left in the chain
    auto_retry: str | None = None  # what the opted-in automatic retry does now (it is starting, or used up)
    progress: Progress | None = None  # the run's last progress: final loss, each epoch's validation, checkpoint


@dataclass(frozen=True)
class SubmitFailed:
    """A submit that failed before any job existed (the platform refused it, or did not answer): nothing runs.

    The triage says whose problem it is and the line that decided it; *Retry* only where it can help."""

    launch: Launch  # the launch row, ended "submit failed", with the platform's message as its reason
    platform: str  # display name
    triage: Triage
    unreachable: bool = False  # the platform did not answer (nothing was submitted), rather than refused
    retry_offered: bool = False  # an infrastructure failure with room left in its retry chain


@dataclass(frozen=True)
class LaunchDetail:
    launch: Launch
    now: float


@dataclass(frozen=True)
class CredentialsForm:
    """A private form of credentials: what the launch needs, or (`more`) the optional settings none asks for."""

    facts: IntakeFacts
    more: bool = False  # the *More settings* form: settings that may be given any time
    kube_profiles: tuple[KubeProfile, ...] = ()  # Kubernetes: the cluster profiles the owner may pick here
    # What may be given instead of a credential taobot makes (a key file in the person's own folder), with a hint.
    alternatives: tuple[tuple[Credential, str], ...] = ()


@dataclass(frozen=True)
class ImageForm:
    state: IntakeState


@dataclass(frozen=True)
class RelaunchForm:
    """What a relaunch may change, each field showing the answer the finished launch ran with."""

    state: IntakeState
    launch_id: str
    values: dict[str, str]  # reply key (platform, image, num_gpus, num_nodes, interval, a root role) -> value now


@dataclass(frozen=True)
class DatasetsForm:
    state: IntakeState
    help: str
    roots: dict[str, dict[str, str]]  # role -> spec key -> template
    inputs: tuple[str, ...]  # every dataset input key of the action


View = (
    Reply
    | IntakeCard
    | IntakeDetail
    | PreflightCard
    | ChannelStatus
    | LaunchPosted
    | StatusUpdate
    | FinalUpdate
    | SubmitFailed
    | LaunchDetail
    | CredentialsForm
    | ImageForm
    | DatasetsForm
    | RelaunchForm
    | HomeView
    | ExperimentCard  # an AutoML search (taobot.automl.views)
    | ExperimentFinal
    | PipelineCard  # a workflow (taobot.workflows.views)
)
Form = CredentialsForm | ImageForm | DatasetsForm | RelaunchForm


# --------------------------------------------------------------------------- builders


def intake_facts(state: IntakeState, catalog: Catalog) -> IntakeFacts:
    platform = platform_of(state, catalog)
    needs = tuple(credential_needs(state, catalog))  # asked once per render; everything below reuses it
    return IntakeFacts(
        state=state,
        step=next_step(state, catalog, needs),
        platform=platform,
        needs=needs,
        optional=tuple(optional_credentials(state, catalog, needs)),
        settings=tuple(extra_settings(state, catalog, needs)),
        datasets=dataset_inputs(state, catalog),
    )


def intake_card(
    state: IntakeState,
    catalog: Catalog,
    launch: Launch | None = None,
    rules: GateRules | None = None,
    now: float | None = None,
    review: Review | None = None,
) -> IntakeCard:
    """The card; `rules` are the operator's policy for this launch (the gate's eighth condition among them)."""
    facts = intake_facts(state, catalog)
    if state.status in ("launched", "cancelled"):
        return IntakeCard(facts=facts, launch=launch if state.status == "launched" else None)
    step = facts.step
    changes = tuple(changed_answers(state.relaunch.answers, answer_values(state, catalog))) if state.relaunch else ()
    return IntakeCard(
        facts=facts,
        missing=tuple(missing_items(state, catalog, facts.needs)),
        platforms=tuple(catalog.platforms.values()) if step is Step.PLATFORM else (),
        default_interval=catalog.default_status_interval_minutes,
        dataset_help=dataset_help(state, catalog) if step is Step.DATASETS else "",
        compute_defaults=unset_compute_defaults(state, catalog) if step is Step.COMPUTE else {},
        gate=compute_gate(state, catalog, facts.needs, rules, now) if step is Step.COMPLETE else None,
        review=review if step is Step.COMPLETE else None,
        changes=changes,
    )


def datasets_form(state: IntakeState, catalog: Catalog) -> DatasetsForm:
    action = action_of(state, catalog)
    return DatasetsForm(
        state=state,
        help=dataset_help(state, catalog),
        roots={role: dict(keys) for role, keys in action.roots.items()},
        inputs=tuple(i.key for i in action.inputs),
    )
