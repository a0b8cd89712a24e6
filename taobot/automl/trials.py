"""One trial of an AutoML search: the values the engine recommended, its launch, its state and its metric.

A trial is numbered from 1 within its experiment and tied to one engine recommendation; its launch id is
`<intake id>-t<number>`, so a restart finds a submitted trial by its number and never launches it twice.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from taobot.automl.plan import Scalar

# queued: recommended, waiting for a free slot; launching: its launch is being made; running: submitted;
# ended: its job ended (metric read or not); reported: the engine has its result; cancelled: never ran to the end.
TrialState = Literal["queued", "launching", "running", "ended", "reported", "cancelled"]
ACTIVE = ("launching", "running")
FINISHED = ("ended", "reported", "cancelled")


class Trial(BaseModel):
    intake_id: str
    number: int
    rec_id: int
    values: dict[str, Scalar] = Field(default_factory=dict)
    state: TrialState = "queued"
    launch_id: str | None = None
    job_state: str | None = None  # the launch's JobState value, as last seen
    metric: float | None = None
    outcome: str | None = None  # "success", or why no metric counts ("failed", "no metric", "cancelled")
    checkpoint: str | None = None
    gpu_hours: float = 0.0
    started_at: float | None = None
    ended_at: float | None = None


def trial_launch_id(intake_id: str, number: int) -> str:
    return f"{intake_id}-t{number}"


def best_trial(trials: list[Trial], higher_is_better: bool) -> Trial | None:
    """The trial with the best metric among those that succeeded; the first such on a tie."""
    scored = [t for t in trials if t.metric is not None and t.outcome == "success"]
    if not scored:
        return None
    # The better metric first; on a tie, the earlier trial.
    return min(scored, key=lambda t: (-t.metric if higher_is_better else t.metric, t.number))
