"""Approvals: a second person lets a launch the policy holds back go ahead, for exactly the inputs they saw.

The policy (`approvals.gpus_over`, `approvals.gpu_hours_over`) says which
launches need one; the admins (TAOBOT_ADMINS and the policy's) and the
policy's approvers may give it, never the launch's owner. An approval is
recorded on the intake with the input fingerprint it approved: the gate's
eighth condition holds only while the inputs are those, so any change after
it needs a new approval. When a preflight passes and only an approval is
missing, the approvers are mentioned in the thread.
"""

from __future__ import annotations

import logging
import time

from taobot.gate import GateRules, compute_gate, input_fingerprint
from taobot.intake import Approval, IntakeState
from taobot.services.policy_checks import PolicyChecks

log = logging.getLogger(__name__)


def mentions(people) -> str:
    return ", ".join(f"<@{p}>" for p in sorted(people))


class Approvals:
    def __init__(self, desk) -> None:
        self.desk = desk
        self.checks = PolicyChecks(desk)

    def authority_refusal(self, state: IntakeState, user: str) -> str | None:
        """Why `user` may not approve `state`'s launch at all, or None."""
        approvers = self.checks.policy.approvers_for(state.owner, self.desk.admins)
        if user == state.owner:
            who = f" Ask {mentions(approvers)}." if approvers else ""
            return (
                f"You started launch `{state.id}`, so you cannot approve it: an approval must come from a second "
                f"person, an admin or an approver of the operator's policy.{who}"
            )
        if user not in approvers:
            who = mentions(approvers) or "nobody (the policy names no admins or approvers)"
            return (
                f"Only admins and the policy's approvers can approve launches; for launch `{state.id}` that is {who}."
            )
        return None

    def approve(self, state: IntakeState, user: str, now: float | None = None) -> None:
        """Record `user`'s approval of the launch as it stands. Caller holds the thread's lock."""
        desk = self.desk
        refusal = self.authority_refusal(state, user)
        rules = self.checks.rules(state)
        fingerprint = input_fingerprint(state, desk.catalog)
        if refusal is None and rules.approval is None:
            refusal = f"Launch `{state.id}` needs no approval under the operator's policy; nothing to approve."
        if refusal is None and state.status != "complete":
            refusal = f"Launch `{state.id}` is {state.status}; an approval is given once its intake is complete."
        given = state.approval
        if refusal is None and given is not None and given.fingerprint == fingerprint and given.by in rules.approvers:
            refusal = f"<@{given.by}> already approved launch `{state.id}` for these inputs."
        if refusal is not None:
            desk.audit(user, "approve", intake=state, allowed=False, reason=refusal)
            desk.tell(user, state.channel, refusal, state.thread_ts)
            return
        at = time.time() if now is None else now
        state.approval = Approval(by=user, at=at, fingerprint=fingerprint, reason=rules.approval or "")
        state.updated_at = at
        desk.store.save_intake(state, user, "approved", {"fingerprint": fingerprint, "reason": rules.approval})
        desk.audit(user, "approve", intake=state, detail={"fingerprint": fingerprint, "reason": rules.approval})
        desk.refresh(state)
        desk.reply(
            state,
            f":white_check_mark: <@{user}> approved launch `{state.id}` ({rules.approval}) for exactly these inputs; "
            "changing any of them needs a new approval.",
        )
        log.info("launch approved", extra={"intake": state.id, "by": user})

    def ask(self, state: IntakeState, rules: GateRules | None = None) -> bool:
        """Mention the approvers in the thread when the launch waits for an approval; True when it was asked."""
        rules = rules or self.checks.rules(state)
        if rules.approval is None:
            return False
        gate = compute_gate(state, self.desk.catalog, rules=rules)
        waiting = [c for c in gate.conditions if c.number == 8 and not c.ok]
        if not waiting:
            return False
        if rules.approvers:
            who = f"{mentions(rules.approvers)}: press *Approve* on the card (or reply `approve`) if it should run."
        else:
            who = "Nobody can approve it: the operator's policy names no admins or approvers."
        self.desk.reply(
            state,
            f":raised_hand: Launch `{state.id}` ({state.model} {state.action} on {state.platform}, started by "
            f"<@{state.owner}>) needs an approval: {rules.approval}. {who}",
        )
        return True
