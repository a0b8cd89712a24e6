"""A workflow as data: stages, their spec overrides, conditions and iterations (pure pydantic, no I/O).

A stage runs one TAO action of one model on GPUs or on CPU. Its overrides are spec keys whose values may
refer to the workflow's inputs (`{inputs.train}`) and to what earlier stages produced
(`{stages.train.checkpoint}`, `{stages.train.results}`, `{stages.evaluate.metric.val_loss}`); a key may name
the stage's own action as `{action}` (`{action}.checkpoint` is `evaluate.checkpoint` in an evaluate stage),
so one definition fits every model whose actions follow TAO's naming.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

REFERENCE = re.compile(r"\{([a-z_]+(?:\.[A-Za-z0-9_-]+)*)\}")
STAGE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
STAGE_RESULTS = ("checkpoint", "results")  # what every ended stage offers besides its metrics
OPERATORS = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RunIf(Frozen):
    """Run the stage only if an earlier stage's metric passes, e.g. `evaluate`'s val_loss below 0.5."""

    stage: str
    metric: str
    op: Literal["<", "<=", ">", ">="]
    value: float

    def holds(self, measured: float) -> bool:
        return OPERATORS[self.op](measured, self.value)

    @property
    def text(self) -> str:
        return f"{self.stage} {self.metric} {self.op} {self.value:g}"


class Stage(Frozen):
    name: str
    action: str | None = None  # the TAO action; None: a step taobot cannot run (a script of the bank's)
    model: str | None = None  # None: the workflow's model
    device: Literal["gpu", "cpu"] = "gpu"
    overrides: dict[str, str] = Field(default_factory=dict)  # spec key -> value, with {references}
    run_if: RunIf | None = None
    optional: bool = False  # left out, and said so, when the model lacks the action
    note: str = ""  # why the stage cannot run here, for the bank's script steps

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not STAGE_NAME.match(v):
            raise ValueError(f"stage name {v!r}: use lower-case letters, digits and _")
        return v

    def references(self) -> list[str]:
        return [m.group(1) for v in self.overrides.values() for m in REFERENCE.finditer(v)]


class WorkflowInput(Frozen):
    name: str
    description: str
    required: bool = True


class Workflow(Frozen):
    name: str
    summary: str
    source: str = "embedded"  # "embedded" or the skill-bank file it was read from
    models: tuple[str, ...] = ()  # the models it is written for; empty: any model with the stages' actions
    inputs: tuple[WorkflowInput, ...] = ()
    stages: tuple[Stage, ...]
    # The stages repeated after the first pass (the DEFT loop's train → evaluate rounds), and how often.
    repeat: tuple[str, ...] = ()
    iterations: int = Field(default=1, ge=1, le=20)

    @model_validator(mode="after")
    def _references_point_back(self) -> "Workflow":
        """A reference names an input, or a stage that runs earlier; anything else is a mistake in the data."""
        seen: list[str] = []
        inputs = {i.name for i in self.inputs}
        for stage in self.stages:
            if stage.name in seen:
                raise ValueError(f"workflow {self.name}: stage {stage.name} appears twice")
            for ref in stage.references():
                head, _, rest = ref.partition(".")
                if head == "inputs" and rest not in inputs:
                    raise ValueError(f"workflow {self.name}, stage {stage.name}: no input named {rest!r}")
                if head == "stages" and rest.split(".")[0] not in seen:
                    raise ValueError(f"workflow {self.name}, stage {stage.name}: {{{ref}}} names no earlier stage")
                if head not in ("inputs", "stages"):
                    raise ValueError(f"workflow {self.name}, stage {stage.name}: unknown reference {{{ref}}}")
            if stage.run_if and stage.run_if.stage not in seen:
                raise ValueError(f"workflow {self.name}, stage {stage.name}: run_if names no earlier stage")
            seen.append(stage.name)
        for name in self.repeat:
            if name not in seen:
                raise ValueError(f"workflow {self.name}: repeat names no stage {name!r}")
        return self

    def stage(self, name: str) -> Stage | None:
        return next((s for s in self.stages if s.name == name), None)
