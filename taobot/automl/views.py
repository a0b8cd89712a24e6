"""What an AutoML thread shows, as typed values: the experiment card (updated in place) and the final reply.

Pure: made from the plan, the trials and the search conditions; `slack/automl_cards.py` renders them.
"""

from __future__ import annotations

from dataclasses import dataclass

from taobot.automl.conditions import SearchCondition
from taobot.automl.plan import AutomlPlan
from taobot.automl.trials import FINISHED, Trial, best_trial
from taobot.progress import Progress


@dataclass(frozen=True)
class ExperimentCard:
    plan: AutomlPlan
    trials: tuple[Trial, ...] = ()
    conditions: tuple[SearchCondition, ...] = ()  # while planning: what the search needs beyond the launch gate
    gpus_per_trial: int | None = None
    note: str = ""  # why the search stopped, when it did

    @property
    def done(self) -> int:
        return sum(1 for t in self.trials if t.state in FINISHED)

    @property
    def best(self) -> Trial | None:
        return best_trial(list(self.trials), self.plan.higher_is_better)

    @property
    def gpu_hours(self) -> float:
        return sum(t.gpu_hours for t in self.trials)


@dataclass(frozen=True)
class ExperimentFinal:
    plan: AutomlPlan
    best: Trial | None
    trials: int
    gpu_hours: float
    note: str = ""


def metric_of(progress: Progress | None, name: str) -> float | None:
    """The run's last value of validation metric `name`: its last validation record, else its last epoch's."""
    if progress is None:
        return None
    wanted = name.lower()
    found = {k.lower(): v for k, v in progress.validation}
    if wanted in found:
        return found[wanted]
    for epoch in reversed(progress.epochs):
        values = {k.lower(): v for k, v in epoch.validation}
        if wanted in values:
            return values[wanted]
    return None


def values_text(values: dict) -> str:
    """`key=value` pairs, numbers in short form."""
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())


def summary_text(card: ExperimentCard, interval_minutes: int) -> str:
    """The interval update of a running search: how far it is, what runs, the best so far."""
    plan = card.plan
    running = [t for t in card.trials if t.state in ("launching", "running")]
    lines = [
        f"*AutoML search `{plan.intake_id}`*: {card.done} of {plan.trials} trials done (every {interval_minutes} min)"
    ]
    if running:
        lines.append(
            "Running: " + ", ".join(f"#{t.number} {t.job_state or t.state} `{values_text(t.values)}`" for t in running)
        )
    best = card.best
    lines.append(
        (f"Best so far: trial {best.number}, {plan.metric} {best.metric:.6g}" if best else "Best so far: —")
        + f". GPU-hours used: {card.gpu_hours:.3f}."
    )
    return "\n".join(lines)
