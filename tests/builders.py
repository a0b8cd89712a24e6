"""Shared builders for tests: intake states at any step, example dataset paths, launch records.

One place, so a change in how an intake is driven is made once for every test file.
"""

from __future__ import annotations

import time

from taobot.catalog import find_action, find_model, load_catalog
from taobot.intake import (
    STEP_ORDER,
    AcceptComputeDefaults,
    ChoosePlatform,
    ConfirmImage,
    CredentialsStored,
    IntakeState,
    SetMonitoring,
    SetSpecInput,
    Step,
    apply,
    dataset_inputs,
    missing_credentials,
    next_step,
    start_intake,
)
from taobot.launches import JobState, Launch

CATALOG = load_catalog()
PLATFORMS = ["lepton", "brev", "slurm", "local-docker", "kubernetes"]


def new(model: str = "dino", action: str = "train") -> IntakeState:
    return start_intake(CATALOG, model, action, owner="U_OWNER", channel="C_CHAN", thread_ts="1700000000.000100")


def ok(state: IntakeState, *events) -> IntakeState:
    """Apply events that must all be accepted."""
    for event in events:
        out = apply(state, event, CATALOG)
        assert not out.errors, (event, out.errors)
        assert out.notes, event
        state = out.state
    return state


def refused(state: IntakeState, event) -> str:
    """Apply an event that must be refused without changing anything; return the error text."""
    before = state.model_dump()
    out = apply(state, event, CATALOG)
    assert out.errors, f"{event} was accepted"
    assert not out.notes
    assert out.state.model_dump() == before
    assert state.model_dump() == before  # the input state was not mutated either
    return " ".join(out.errors)


def example_path(platform: str, model: str, name: str) -> str:
    leaf = name.replace("[", "_").replace("]", "_")
    if platform == "slurm":
        return f"/lustre/fsw/team/users/jdoe/data/{model}/{leaf}"
    if platform == "local-docker":
        return f"/data/tao/{model}/{leaf}"
    return f"s3://my-bucket/{model}/{leaf}"


def store_missing_credentials(state: IntakeState) -> IntakeState:
    names = [n.name for n in missing_credentials(state, CATALOG)]
    if not names:
        return state
    return ok(state, CredentialsStored({n: f"fp-{n.lower()}" for n in names}))


def fill_datasets(state: IntakeState) -> IntakeState:
    action = find_action(find_model(CATALOG, state.model), state.action)
    platform = state.platform or "local-docker"
    for spec in action.required_inputs:
        if spec.key not in dataset_inputs(state, CATALOG):
            state = ok(state, SetSpecInput(spec.key, example_path(platform, state.model, spec.key)))
    return state


def drive_to(step: Step, platform: str, model: str = "dino", action: str = "train") -> IntakeState:
    """A state whose next question is `step` (or a complete one for Step.COMPLETE)."""
    state = new(model, action)
    target = STEP_ORDER.index(step) if step is not Step.COMPLETE else len(STEP_ORDER)
    if target > 0:
        state = ok(state, ChoosePlatform(platform))
    if target > 1:
        state = ok(state, SetMonitoring(True, 5))
    if target > 4:
        state = fill_datasets(state)  # before credentials: s3:// inputs add S3 keys
    if target > 2:
        state = store_missing_credentials(state)
    if target > 3:
        state = ok(state, ConfirmImage())
    if target > 5:
        state = ok(state, AcceptComputeDefaults())
    assert next_step(state, CATALOG) is step
    return state


def spec_paths(platform: str, model: str, action: str) -> dict[str, str]:
    """An example path for every required dataset input, in the platform's path form."""
    act = find_action(find_model(CATALOG, model), action)
    return {i.key: example_path(platform, model, i.key) for i in act.required_inputs}


def launch_record(**changes: object) -> Launch:
    """A launched job as the store returns it; any field can be given."""
    now = time.time()
    fields: dict = {
        "id": "abcd1234-00001",
        "intake_id": "abcd1234",
        "channel": "C_CHAN",
        "thread_ts": "1700000000.000100",
        "owner": "U_OWNER",
        "platform": "slurm",
        "model": "cosmos-rl",
        "action": "train",
        "job_id": "4242",
        "log_location": "/lustre/runs/abcd/logs/slurm-4242.out",
        "results_location": "/lustre/runs/abcd/results",
        "state": JobState.RUNNING,
        "native": "RUNNING",
        "monitor": True,
        "interval_minutes": 5,
        "launched_at": now - 600,
        "state_since": now - 300,
    }
    fields.update(changes)
    return Launch(**fields)
