"""The pipeline card of a workflow thread: one line per stage, as a typed view (pure; slack/ renders it)."""

from __future__ import annotations

from dataclasses import dataclass

CONFIRM_IMAGES = "workflow_confirm_images"  # action ids of the card's buttons
RESUME = "workflow_resume"


@dataclass(frozen=True)
class StageLine:
    name: str
    action: str
    model: str
    image: str  # the image it runs (or its default, not confirmed yet)
    image_confirmed: bool
    state: str  # waiting, starting, running, succeeded, failed, skipped, …
    duration_s: float | None = None
    metric: str = ""  # the stage's key metric, e.g. "val_loss 0.2000"
    launch_id: str | None = None
    note: str = ""


@dataclass(frozen=True)
class PipelineCard:
    intake_id: str
    workflow: str
    summary: str
    model: str
    status: str  # collecting, running, stopped, done
    stages: tuple[StageLine, ...]
    left_out: tuple[str, ...] = ()
    resume_from: str | None = None  # the failed stage *Resume from here* reruns from
    images_pending: bool = False  # some stage image still needs confirming

    @property
    def text(self) -> str:
        """The card in plain words (the message's notification text, and what the console would print)."""
        lines = [f"Workflow {self.workflow} for {self.model} ({self.status})"]
        for s in self.stages:
            took = f", {duration(s.duration_s)}" if s.duration_s is not None else ""
            metric = f", {s.metric}" if s.metric else ""
            lines.append(f"{s.name} ({s.action}): {s.state}{took}{metric}")
        return "\n".join(lines)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"
