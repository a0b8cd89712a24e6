"""The launch intake as a pure core: state, events, intents, queries, transitions, replies, help.

`apply(state, event, catalog)` returns the new state plus what to tell the
person; `next_step(state, catalog)` says what to ask next; `missing_items`
lists everything still missing with a concrete example. Nothing in this
package touches Slack, the database, the network or any key: the Slack
listeners, the console and the tests all drive the same functions.

One module per concern:

- `state`: the live state of one launch thread (a pydantic value, stored as JSON)
- `events`: what the transitions accept, and their `Outcome`
- `intents`: what a person asked for, and the one table of commands
- `queries`: pure look-ups of a state against the catalog
- `values`: whether one given value (image, path, credential) can be right
- `transitions`: `apply` and `apply_all`
- `replies`: a plain-text thread reply into events or a command
- `help`, `summary`: help texts and the list of what is still missing
"""

from taobot.intake.events import (
    AcceptComputeDefaults,
    Cancel,
    ChoosePlatform,
    ConfirmImage,
    ConfirmMounted,
    CredentialsStored,
    Event,
    Outcome,
    OverrideImage,
    SetCompute,
    SetMonitoring,
    SetNotify,
    SetResults,
    SetRoot,
    SetSpecInput,
    UseSshAgent,
)
from taobot.intake.help import dataset_help, expected_shape, help_text
from taobot.intake.queries import (
    CredentialNeed,
    action_of,
    compute_defaults,
    compute_fields,
    credential_needs,
    dataset_inputs,
    extra_settings,
    may_act,
    missing_credentials,
    missing_inputs,
    model_of,
    mounted_paths,
    next_step,
    optional_credentials,
    platform_of,
    status_interval,
    step_done,
    unset_compute_defaults,
    uses_s3,
    wanted_credentials,
)
from taobot.intake.replies import MAX_REPLY_CHARS, ParsedReply, parse_reply
from taobot.intake.state import (
    CLOSED_STATUSES,
    STEP_ORDER,
    Approval,
    Confirmation,
    ImageChoice,
    IntakeState,
    PreflightRecord,
    Step,
    new_intake_id,
    start_intake,
)
from taobot.intake.summary import MissingItem, missing_items
from taobot.intake.transitions import apply, apply_all
from taobot.intake.values import (
    INTERVAL_ADVICE,
    MAX_INTERVAL,
    MIN_INTERVAL,
    check_credential_value,
    check_image_ref,
    path_kind,
)

__all__ = [
    "CLOSED_STATUSES",
    "AcceptComputeDefaults",
    "Approval",
    "Cancel",
    "ChoosePlatform",
    "ConfirmImage",
    "ConfirmMounted",
    "Confirmation",
    "CredentialNeed",
    "CredentialsStored",
    "Event",
    "INTERVAL_ADVICE",
    "ImageChoice",
    "IntakeState",
    "MAX_INTERVAL",
    "MAX_REPLY_CHARS",
    "MIN_INTERVAL",
    "MissingItem",
    "Outcome",
    "OverrideImage",
    "ParsedReply",
    "PreflightRecord",
    "STEP_ORDER",
    "SetCompute",
    "SetMonitoring",
    "SetNotify",
    "SetResults",
    "SetRoot",
    "SetSpecInput",
    "Step",
    "UseSshAgent",
    "action_of",
    "apply",
    "apply_all",
    "check_credential_value",
    "check_image_ref",
    "compute_defaults",
    "compute_fields",
    "credential_needs",
    "dataset_help",
    "dataset_inputs",
    "expected_shape",
    "extra_settings",
    "help_text",
    "may_act",
    "missing_credentials",
    "missing_inputs",
    "missing_items",
    "model_of",
    "mounted_paths",
    "new_intake_id",
    "next_step",
    "optional_credentials",
    "parse_reply",
    "path_kind",
    "platform_of",
    "start_intake",
    "status_interval",
    "step_done",
    "unset_compute_defaults",
    "uses_s3",
    "wanted_credentials",
]
