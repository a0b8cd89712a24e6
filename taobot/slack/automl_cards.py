"""The AutoML experiment card (one per AutoML thread, updated in place) and its final reply, as Block Kit."""

from __future__ import annotations

from taobot.automl.views import ExperimentCard, ExperimentFinal, values_text
from taobot.slack.blocks import CANCEL_JOB, actions, button, clip, context, fit, plain, section

# The final reply's button: a normal train thread prefilled with the best trial's values.
AUTOML_TRAIN_BEST = "automl_train_best"
MAX_TRIAL_LINES = 40  # a 50-trial search shows its first 40 lines and says how many more


def _direction(higher: bool) -> str:
    return "higher is better" if higher else "lower is better"


def _metric(value: float | None) -> str:
    return "—" if value is None else f"{value:.6g}"


def experiment_card(view: ExperimentCard) -> dict:
    plan, iid = view.plan, view.plan.intake_id
    status = {
        "planning": "planning: answer the intake card above, then *Run preflight* and *Launch* there",
        "running": f"running: {view.done} of {plan.trials} trials done",
        "done": f"done: {view.done} of {plan.trials} trials",
        "cancelled": f"cancelled: {view.done} of {plan.trials} trials ended",
    }[plan.status]
    per_trial = f", {view.gpus_per_trial} GPU(s) per trial" if view.gpus_per_trial else ""
    lines = [
        f"*AutoML search: {plan.model} train* (`{iid}`): {status}",
        f"*Algorithm:* `{plan.algorithm}`   *Metric:* `{plan.metric}` ({_direction(plan.higher_is_better)})",
        f"*Budget:* {plan.trials} trials, {plan.parallel} at once"
        + (f", {plan.epochs} epochs each" if plan.epochs else "")
        + per_trial,
        "*Searching:* " + (", ".join(f"`{k}` {p.text}" for k, p in plan.params.items()) or "nothing yet"),
    ]
    blocks = [section("\n".join(lines))]
    if view.conditions:
        marks = "\n".join(f"{':white_check_mark:' if c.ok else ':x:'} {c.name}: {c.detail}" for c in view.conditions)
        blocks.append(section("*Before the first trial*\n" + marks))
        blocks.append(
            context(
                "Change the plan with replies: `trials=4 parallel=2 epochs=3`, `algorithm=bayesian`, "
                "`metric=val_loss:min`, `search.train.optim.lr=1e-5..1e-2`, `search.x=a|b|c`, `search.x=off`."
            )
        )
    if view.trials:
        rows = []
        for trial in view.trials[:MAX_TRIAL_LINES]:
            # A launched trial shows its job's state (Running, Succeeded, …); one not launched, its own.
            state = trial.job_state if trial.job_state and trial.state != "queued" else trial.state
            if trial.outcome and trial.outcome != "success":
                state = f"{state} ({trial.outcome})"
            rows.append(
                f"#{trial.number} `{values_text(trial.values)}`: {state}, {plan.metric} {_metric(trial.metric)}"
            )
        if len(view.trials) > MAX_TRIAL_LINES:
            rows.append(f"… and {len(view.trials) - MAX_TRIAL_LINES} more")
        blocks.append(section(clip("*Trials*\n" + "\n".join(rows), 2900)))
    best = view.best
    summary = (
        f"*Best so far:* trial {best.number}, {plan.metric} {_metric(best.metric)}" if best else "*Best so far:* —"
    )
    blocks.append(
        context(f"{summary}   *GPU-hours used:* {view.gpu_hours:.3f}" + (f"   {view.note}" if view.note else ""))
    )
    if plan.status == "running":
        confirm = {
            "title": plain("Cancel this search?"),
            "text": plain("Every running trial is cancelled on its platform and no new one starts.", 300),
            "confirm": plain("Cancel search"),
            "deny": plain("Keep it running"),
        }
        blocks.append(actions(f"automl_{iid}", [button("Cancel search", CANCEL_JOB, iid, "danger", confirm)]))
    return {"text": clip(lines[0], 3000), "blocks": fit(blocks)}


def experiment_final(view: ExperimentFinal) -> dict:
    plan, best = view.plan, view.best
    head = f"*AutoML search {plan.intake_id} {plan.status}*: {view.trials} trial(s), {view.gpu_hours:.3f} GPU-hours"
    if best is None:
        text = (
            head
            + "\nNo trial reported `"
            + plan.metric
            + "`, so there is no best one."
            + (f"\n{view.note}" if view.note else "")
        )
        return {"text": clip(text, 3000), "blocks": [section(text)]}
    lines = [
        head,
        f"*Best:* trial {best.number}, `{plan.metric}` = {_metric(best.metric)} ({_direction(plan.higher_is_better)})",
        f"*Values:* `{values_text(best.values)}`",
        f"*Checkpoint:* `{best.checkpoint}`" if best.checkpoint else "*Checkpoint:* not reported by the run",
    ]
    if view.note:
        lines.append(view.note)
    blocks = [
        section("\n".join(lines)),
        actions(
            f"automl_final_{plan.intake_id}",
            [button("Train with these values", AUTOML_TRAIN_BEST, plan.intake_id, "primary")],
        ),
    ]
    return {"text": clip("\n".join(lines), 3000), "blocks": blocks}
