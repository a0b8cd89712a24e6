"""Relaunch: a new launch in a finished thread from the same answers, with changes, after a fresh preflight.

The *Relaunch* button resets the card to the same inputs and opens the form of what to change (platform,
image, GPUs, nodes, interval, dataset roots); `relaunch key=value …` in the thread does both at once. A change
goes through the intake's own answer path (the operator's policy, the transitions, the save, the card), and
the card shows what changed since the launch it follows. The gate then asks for a new preflight: the
preflight record is dropped and the changed inputs have another fingerprint anyway.
"""

from __future__ import annotations

import shlex
import time
from concurrent.futures import Executor

from taobot.errors import IntakeConflict
from taobot.intake import IntakeState, action_of, parse_reply
from taobot.intake.intents import Relaunch
from taobot.intake.state import RelaunchBase
from taobot.intake.summary import RELAUNCH_FIELDS, answer_values, changed_answers
from taobot.launches import Launch
from taobot.services.desk import Desk
from taobot.views import RelaunchForm


def answer_words(key: str, value: str) -> str:
    """A form field as reply words. The interval field says `off`, or turns updates on at that interval."""
    if key == "interval":
        return (
            "monitor=no" if value.lower() in ("off", "no", "0") else "monitor=yes " + shlex.quote(f"interval={value}")
        )
    return shlex.quote(f"{key}={value}")


class Relaunches:
    def __init__(self, desk: Desk, work: Executor) -> None:
        self.desk = desk
        self.work = work
        self.answer = None  # set by Services: the intake's answer path (policy screen, transitions, save, card)

    def start(self, state: IntakeState, user: str, launch: Launch, intent: Relaunch) -> RelaunchForm | None:
        """A new launch in this thread from the same answers, `intent`'s changes applied; a fresh preflight first.

        Runs off the caller's thread: a typed `relaunch` arrives with the thread's lock held, and this takes it.
        """
        if state.kind != "launch":  # a search's trials and a workflow's stages are run by their own services
            what = "an AutoML search" if state.kind == "automl" else "a workflow"
            self.desk.reply(
                state,
                f"`relaunch` runs one job again; this thread runs {what}. Start a new one with "
                f"`/tao {state.kind} {state.model}`. Nothing was changed.",
            )
            return None
        if launch.state.active:
            self.desk.reply(
                state, f"`{launch.id}` is still {launch.state.value}; cancel it first or wait for it to end."
            )
            return None
        self.work.submit(self._relaunch, state.id, user, launch.id, intent)
        if intent.changes is None and not intent.fields:  # the button: the form of what to change opens now
            values = answer_values(state, self.desk.catalog)
            roles = tuple(self._action_roots(state))
            return RelaunchForm(state, launch.id, {k: values.get(k, "") for k in (*RELAUNCH_FIELDS, *roles)})
        return None

    def _action_roots(self, state: IntakeState) -> list[str]:
        return list(action_of(state, self.desk.catalog).roots)

    def _relaunch(self, intake_id: str, user: str, launch_id: str, intent: Relaunch) -> None:
        try:
            self._relaunch_locked(intake_id, user, launch_id, intent)
        except IntakeConflict:  # another instance saved this thread meanwhile: the person hears it and sends it again
            state = self.desk.store.get_intake(intake_id)
            if state is not None:
                self.desk.reply(
                    state, "This launch changed in another taobot instance at the same moment; relaunch once more."
                )

    def _relaunch_locked(self, intake_id: str, user: str, launch_id: str, intent: Relaunch) -> None:
        desk = self.desk
        with desk.lock(intake_id):
            state, launch = desk.store.get_intake(intake_id), desk.store.get_launch(launch_id)
            if state is None or launch is None:
                return
            if any(other.state.active for other in desk.store.launches_for_intake(intake_id)):
                desk.reply(state, f"Launch `{state.id}` has a job running; cancel it first or wait for it to end.")
                return
            changes, unreadable = list(intent.changes or ()), list(intent.unreadable)
            if intent.fields:  # the form: only what differs from the answers now, read as one reply
                now = answer_values(state, desk.catalog)
                text = " ".join(
                    answer_words(k, v.strip()) for k, v in intent.fields if v.strip() and v.strip() != now.get(k)
                )
                parsed = parse_reply(text, state, desk.catalog) if text else None
                if parsed is not None and parsed.secret_warning:
                    desk.reply(state, parsed.secret_warning)
                    return
                changes, unreadable = (parsed.events, parsed.errors) if parsed else ([], [])
            fresh = state.status == "launched"
            if fresh:
                after = (desk.store.latest_launch(intake_id) or launch).id  # the answers now are the newest launch's
                state.relaunch = RelaunchBase(after=after, answers=answer_values(state, desk.catalog))
                state.status = "complete"  # the transitions below set it back to collecting if a change asks more
                state.preflight = None
                state.approval = None  # an approval lets one launch go; another one needs its own
                state.retry_pending = None  # a relaunch is a new start, not a retry
                state.updated_at = time.time()
                desk.store.save_intake(state, user, "relaunch", {"after": launch.id, "changes": len(changes)})
                state = desk.store.get_intake(intake_id) or state
                desk.refresh(state)
            if changes or unreadable:
                state = self.answer(state, user, changes, "relaunch_changes", {"after": launch.id}, errors=unreadable)
            base = state.relaunch
            changed = changed_answers(base.answers, answer_values(state, desk.catalog)) if base else []
            if changed:
                lines = ", ".join(f"{k} {old or '—'} → {new or '—'}" for k, old, new in changed)
                desk.reply(
                    state,
                    f"Relaunch of `{launch.id}` with changes: {lines}. Every other answer is the same. "
                    "Run preflight (it checks everything afresh), then Launch.",
                )
            elif fresh:
                desk.reply(
                    state,
                    "Same inputs, ready to go again. Run preflight (it checks everything afresh), then Launch. "
                    "Change any input first with a `key=value` reply (or the form) if you like.",
                )
