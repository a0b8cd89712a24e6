"""Multi-stage workflows as data (pure): the schema, the embedded and skill-bank definitions, a workflow fitted
to a model (`Plan`), its references resolved from earlier stages' results, and its gate over every stage.

No Slack, store, network or keys here: `taobot.services.workflows` runs the stages through the launcher.
"""

from taobot.workflows.gate import StageCheck, StageImage, check_stages, stage_paths, stage_state, verified_paths
from taobot.workflows.load import bank_workflows, embedded_workflows, load_workflows
from taobot.workflows.plan import (
    NotFitting,
    Plan,
    PlannedStage,
    StageResult,
    Unresolved,
    condition_holds,
    find_workflow,
    fit,
    fitting_models,
    input_references,
    resolve,
)
from taobot.workflows.schema import RunIf, Stage, Workflow, WorkflowInput

__all__ = [
    "NotFitting",
    "Plan",
    "PlannedStage",
    "RunIf",
    "Stage",
    "StageCheck",
    "StageImage",
    "StageResult",
    "Unresolved",
    "Workflow",
    "WorkflowInput",
    "bank_workflows",
    "check_stages",
    "condition_holds",
    "embedded_workflows",
    "find_workflow",
    "fit",
    "fitting_models",
    "input_references",
    "load_workflows",
    "resolve",
    "stage_paths",
    "stage_state",
    "verified_paths",
]
