"""Services: take a person's intents, decide, and answer with views.

`Services` is what the Slack listeners and the console call. It checks
who may act and whether the intake is still open, takes the thread's lock,
and routes each intent to the service of its concern:

- `intake.IntakeService`: starting threads, answers, forms
- `preflight_runs.PreflightRuns`: preflight in the background, tied to its inputs
- `launch_control.LaunchControl`: launch, cancel, detach/attach, relaunch
- `status.StatusQueries`: `/tao status`

Services never import `slack/`; they send views through a `Messenger`.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from taobot.catalog import Catalog
from taobot.errors import IntakeConflict, TaobotError
from taobot.intake import CLOSED_STATUSES, IntakeState, may_act, parse_reply
from taobot.intake.help import expected_shape, help_text
from taobot.intake.intents import (
    LAUNCH_INTENTS,
    Answer,
    Approve,
    ConfirmMounts,
    Intent,
    Launch,
    OpenForm,
    RunPreflight,
    ShowHelp,
    ShowStatus,
    SubmitCredentials,
    SubmitDatasets,
    TrustHostKey,
    UseTaobotKey,
)
from taobot.services.approvals import Approvals
from taobot.services.automl import AutomlService
from taobot.services.desk import Context, Desk, Messenger
from taobot.services.intake import IntakeService
from taobot.services.launch_control import LaunchControl
from taobot.services.preflight_runs import PreflightRuns
from taobot.services.status import StatusQueries
from taobot.services.workflows import workflows_for
from taobot.store import Store
from taobot.views import Form, IntakeDetail, Reply, View, intake_facts

log = logging.getLogger(__name__)

__all__ = ["Context", "Messenger", "Services"]

FILES_NOT_READ = "taobot reads only the text of a reply; the attached file was not read."
CONFLICT_RETRIES = 3
NOT_YOURS = "not the person who started the launch, nor an admin"
UNKNOWN_LAUNCH = (
    "This launch is unknown to taobot (it may have expired or belong to another installation). "
    "Start a new one with `/tao launch <model> [action]`."
)


class Services:
    def __init__(
        self,
        store: Store,
        catalog: Catalog,
        messenger: Messenger,
        admins: frozenset[str] = frozenset(),
        expiry_days: int = 30,
        platform_settings=None,
        launcher=None,
        monitor=None,
        policy=None,
        preflight_valid_minutes: int = 60,
    ) -> None:
        from taobot.config import PlatformSettings

        self.desk = Desk(store, catalog, messenger, admins, expiry_days, policy, preflight_valid_minutes)
        self.store, self.catalog = store, catalog
        self._work = ThreadPoolExecutor(max_workers=4, thread_name_prefix="work")
        self.intake = IntakeService(self.desk, platform_settings or PlatformSettings())
        self.preflight = PreflightRuns(self.desk, self._work, platform_settings or PlatformSettings())
        self.launches = LaunchControl(self.desk, self._work, launcher, monitor, preflight=self.preflight)
        self.intake.kube = self.launches.kube = self.preflight.kube  # one set of Kubernetes identity rules
        self.launches.relaunches.answer = self.intake.answer  # a relaunch's changes are answers like any other
        self.status = StatusQueries(self.desk)
        self.approvals = Approvals(self.desk)
        self.launches.workflows = self.workflows = workflows_for(self.desk, self._work, self.intake, self.launches)
        self.launches.automl = self.automl = AutomlService(self.desk, self._work, self.intake, self.launches)

    @property
    def monitor(self):
        return self.launches.monitor

    @monitor.setter
    def monitor(self, monitor) -> None:
        self.launches.monitor = monitor

    # ------------------------------------------------------------------ what people say and do

    def start(self, channel: str, user: str, model: str, action: str | None, thread_ts=None, answers="") -> IntakeState:
        state = self.intake.start(channel, user, model, action, thread_ts)
        self.desk.audit(user, "start", intake=state, detail={"model": state.model, "action": state.action})
        return self.intake.first_answers(state, user, answers) if answers.strip() else state  # one-message launch

    def is_launch_thread(self, channel: str, thread_ts: str) -> bool:
        return self.store.find_intake(channel, thread_ts) is not None

    def reply(self, ctx: Context, text: str, files: int = 0) -> bool:
        """A plain-text reply in a thread (`files`: how many files came with it). False when not a launch thread."""
        desk = self.desk
        state = self.store.find_intake(ctx.channel, ctx.thread_ts or "")
        if state is None:
            return False
        with desk.lock(state.id):
            state = self.store.find_intake(ctx.channel, ctx.thread_ts or "") or state
            parsed = parse_reply(text, state, self.catalog)
            if parsed.secret_warning:
                # Never logged with the text, never stored: only the fact of the warning.
                self.store.log_event(state.id, ctx.user, "secret_warning", {})
                desk.reply(state, parsed.secret_warning)
                return True
            intent = parsed.intent
            if not may_act(state, ctx.user, desk.admins) and not isinstance(intent, Approve):  # approvers: see approve
                if intent is not None:
                    self._audit(ctx, state, intent, NOT_YOURS)
                    desk.tell(
                        ctx.user,
                        ctx.channel,
                        f"Only <@{state.owner}>, who started launch `{state.id}`, or an admin can change it.",
                        ctx.thread_ts,
                    )
                return True
            if desk.expired(state):
                desk.reply(state, desk.expired_text(state))
                return True
            if (state.kind == "workflow" and self.workflows.answer(state, ctx.user, text)) or (
                state.kind == "automl" and self.automl.answer(state, ctx.user, text)  # only a search's plan
            ):
                return True  # a stage's image, or *Resume from here*, said in words
            if intent is not None:
                self._audit(ctx, state, intent)
            if files and not text.strip():
                desk.reply(state, FILES_NOT_READ + " " + expected_shape())
                return True
            if isinstance(intent, Answer) or intent is None:
                # Answers given in a reply always get an answer back, even if it is only the expected shape.
                self._retrying(
                    state,
                    lambda fresh: self.intake.answer(
                        fresh,
                        ctx.user,
                        list(intent.events) if intent else [],
                        "reply",
                        {"events": [type(e).__name__ for e in parsed.events]},
                        errors=parsed.errors,
                        say_shape_if_silent=expected_shape(),
                    ),
                )
            else:
                self._retrying(state, lambda fresh: self._route(fresh, ctx.user, intent))
            return True

    def act(self, ctx: Context, intake_id: str, intent: Intent) -> Form | None:
        """A click, a choice or a form on a thread's messages. Returns a form for the caller to open."""
        desk = self.desk
        state = self.store.get_intake(intake_id)
        refusal = self._refusal(ctx, state, intent)
        self._audit(ctx, state, intent, refusal)
        if refusal:
            desk.tell(ctx.user, ctx.channel, refusal, state.thread_ts if state else None)
            return None
        if isinstance(intent, LAUNCH_INTENTS):
            return self.launches.act(state, ctx.user, intent)  # *Relaunch*: the form of what to change
        if state.status in CLOSED_STATUSES:
            desk.tell(ctx.user, ctx.channel, f"Launch `{state.id}` is {state.status}.", state.thread_ts)
            return None
        if isinstance(intent, OpenForm):
            form = self.intake.form(state, intent)
            if isinstance(form, str):
                desk.tell(ctx.user, ctx.channel, form, state.thread_ts)
                return None
            return form
        with desk.lock(state.id):
            fresh = self.store.get_intake(intake_id) or state
            self._retrying(fresh, lambda current: self._route(current, ctx.user, intent))
        return None

    def _retrying(self, state: IntakeState, act) -> None:
        """Run `act(state)`; when another instance saved the intake meanwhile, read it again and redo, a few times.

        The lock orders one process's work; across processes (two instances on one database) the store's
        compare-and-swap refuses a write from a stale read, so no answer is ever lost by overwriting.
        """
        for _attempt in range(CONFLICT_RETRIES):
            try:
                act(state)
                return
            except IntakeConflict:
                log.info("intake changed by another instance meanwhile; redoing", extra={"intake": state.id})
                state = self.store.get_intake(state.id) or state
        self.desk.reply(
            state,
            "Another taobot instance changed this launch at the same moment, again and again; "
            "nothing was changed this time. Send it once more.",
        )

    def check_form(
        self, ctx: Context, intake_id: str, intent: SubmitCredentials | SubmitDatasets | Answer
    ) -> dict[str, str]:
        """Problems by field of a form about to be submitted; {} to accept it. Fast: it runs inside the ack."""
        state = self.store.get_intake(intake_id)
        if state is None:
            return {"": "This launch is unknown or expired; start a new one with /tao launch."}
        if not may_act(state, ctx.user, self.desk.admins):
            return {"": f"Only the person who started launch {state.id} or an admin can change it."}
        return self.intake.check_form(state, intent, ctx.user)

    def _audit(self, ctx: Context, state: IntakeState | None, intent: Intent, refusal: str | None = None) -> None:
        """One audit row per intent: what was asked, by whom, where, and the refusal if there was one."""
        detail = {"events": [type(e).__name__ for e in intent.events]} if isinstance(intent, Answer) else {}
        if isinstance(intent, SubmitCredentials):
            detail = {"names": sorted(n for n, v in intent.values.items() if v)}  # names only, never a value
        self.desk.audit(
            ctx.user,
            type(intent).__name__,
            intake=state,
            channel=ctx.channel,
            allowed=refusal is None,
            reason=refusal or "",
            detail=detail,
        )

    def _refusal(self, ctx: Context, state: IntakeState | None, intent: Intent | None = None) -> str | None:
        if state is None:
            return UNKNOWN_LAUNCH
        if isinstance(intent, Approve) and (refusal := self.approvals.authority_refusal(state, ctx.user)):
            return refusal  # approvers act in threads that are not theirs; the owner never approves
        if not isinstance(intent, Approve) and not may_act(state, ctx.user, self.desk.admins):
            return f"Only <@{state.owner}>, who started launch `{state.id}`, or an admin can answer it."
        if self.desk.expired(state):
            return self.desk.expired_text(state)
        return None

    def _route(self, state: IntakeState, user: str, intent: Intent) -> None:
        """One intent on an open intake. Caller holds the thread's lock."""
        if isinstance(intent, (Answer, ConfirmMounts, SubmitCredentials, SubmitDatasets, UseTaobotKey, TrustHostKey)):
            self.intake.apply_intent(state, user, intent)
        elif isinstance(intent, RunPreflight):
            self.preflight.start(state, user)
        elif isinstance(intent, Launch):
            self.launches.launch(state, user)
        elif isinstance(intent, Approve):
            self.approvals.approve(state, user)
        elif isinstance(intent, LAUNCH_INTENTS):
            self.launches.act(state, user, intent)
        elif isinstance(intent, ShowHelp):
            self.desk.reply(state, help_text(self.catalog))
        elif isinstance(intent, ShowStatus):
            self.desk.messenger.post(state.channel, self.status_of(state), thread_ts=state.thread_ts)
        else:
            log.warning("unhandled intent %s", type(intent).__name__, extra={"intake": state.id})

    # ------------------------------------------------------------------ views asked for directly

    def help(self) -> Reply:
        return Reply(help_text(self.catalog))

    def channel_status(self, channel: str, user: str | None = None, audit: bool = True) -> View:
        """This channel's launches; in a DM, the asker's own (`StatusQueries.channel`)."""
        return self.status.channel(channel, user, audit)

    def one_status(self, wanted: str, channel: str | None = None, user: str | None = None, audit: bool = True) -> View:
        """One launch, looked for only where the asker may see it (`StatusQueries.one`)."""
        return self.status.one(wanted, channel, user, audit)

    def audit_status(self, user: str, channel: str | None, wanted: str | None = None) -> None:
        self.status.audit(user, channel, wanted)

    def show_home(self, user: str) -> None:
        """Publish the person's App Home (their own launches); a Slack failure is logged, never raised."""
        try:
            self.desk.messenger.publish_home(user, self.status.home(user))
        except TaobotError as exc:
            log.warning("App Home not published: %s", exc)

    def status_of(self, state: IntakeState) -> IntakeDetail:
        return IntakeDetail(intake_facts(state, self.catalog), time.time())

    # ------------------------------------------------------------------ lifecycle

    def refresh_for_launch(self, launch) -> None:
        """The monitor saw a change: show it on the intake card (and a workflow stage's end starts the next)."""
        self.workflows.stage_ended(launch)
        state = self.store.get_intake(launch.intake_id)
        if state is not None:
            self.desk.refresh(state)
        self.show_home(launch.owner)

    def recover(self) -> int:
        return self.preflight.recover() + self.workflows.sweep()  # a running workflow goes on where it stands

    def shutdown(self, grace_s: float) -> None:
        """Stop taking work; give running preflights and submissions up to `grace_s` to finish."""
        self._work.shutdown(wait=False, cancel_futures=True)
        done = threading.Event()
        threading.Thread(target=lambda: (self._work.shutdown(wait=True), done.set()), daemon=True).start()
        if not done.wait(grace_s):
            log.warning("shutdown: work still running after %ss; leaving it", grace_s)
