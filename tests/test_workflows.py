"""Workflows as data: the embedded definitions, fitting them to models, references resolved from earlier stages'
results, conditions, the gate over every stage, the store's once-only stage claim, and the skill bank's own."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from taobot.errors import CatalogError, UnknownNameError
from taobot.intake.state import PreflightRecord
from taobot.secrets import SecretBox
from taobot.store import Store
from taobot.workflows import (
    NotFitting,
    StageImage,
    StageResult,
    Unresolved,
    Workflow,
    bank_workflows,
    check_stages,
    condition_holds,
    embedded_workflows,
    find_workflow,
    fit,
    resolve,
)
from taobot.workflows.load import bank_workflow
from tests.builders import CATALOG, new, ok
from tests.test_module_map import MODULES, NOT_FROM_CORE, imports_of, under

FLOWS = embedded_workflows()
BANK = Path(os.environ.get("TAO_SKILL_BANK_TEST_PATH", Path(__file__).resolve().parents[2] / "shared/tao-skill-bank"))


def test_the_workflow_package_is_pure():
    for name in [m for m in MODULES if under(m, ("taobot.workflows",))]:
        assert not [m for m in imports_of(name, MODULES[name]) if under(m, NOT_FROM_CORE)], name


def test_train_eval_export_fits_dino_without_its_missing_engine_stage_and_says_so():
    plan = fit(FLOWS["train-eval-export"], "dino", CATALOG)
    assert [(s.name, s.action) for s in plan.stages] == [
        ("train", "train"),
        ("evaluate", "evaluate"),
        ("export", "export"),
    ]
    assert dict(plan.stages[1].overrides) == {"evaluate.checkpoint": "{stages.train.checkpoint}"}
    assert plan.left_out == ("gen_trt_engine: dino has no `gen_trt_engine` action",)
    full = fit(FLOWS["train-eval-export"], "classification-pyt", CATALOG)
    assert [s.action for s in full.stages] == ["train", "evaluate", "export", "gen_trt_engine"] and not full.left_out


def test_an_unknown_workflow_or_a_model_it_does_not_fit_lists_what_there_is():
    with pytest.raises(UnknownNameError) as unknown:
        find_workflow(FLOWS, "train-everything")
    assert "deft-loop" in unknown.value.message and "train-eval-export" in unknown.value.message
    with pytest.raises(NotFitting) as wrong:
        fit(FLOWS["deft-loop"], "dino", CATALOG)
    assert "Models it fits: cosmos-rl." in wrong.value.message


def test_the_deft_loop_unrolls_its_rounds_and_each_evaluate_reads_its_own_rounds_checkpoint():
    plan = fit(FLOWS["deft-loop"], "cosmos-rl", CATALOG)
    assert [s.name for s in plan.stages] == [
        "baseline",
        "train",
        "evaluate",
        "train_2",
        "evaluate_2",
        "train_3",
        "evaluate_3",
    ]
    results = {"train": StageResult("/r/1", "/r/1/ckpt"), "train_2": StageResult("/r/2", "/r/2/ckpt")}
    assert resolve(plan, plan.stage("evaluate"), {}, results) == {"model.model_name": "/r/1/ckpt"}
    assert resolve(plan, plan.stage("evaluate_2"), {}, results) == {"model.model_name": "/r/2/ckpt"}
    with pytest.raises(Unresolved, match="train_3` has not ended"):
        resolve(plan, plan.stage("evaluate_3"), {}, results)


def test_a_reference_to_a_stage_without_a_checkpoint_is_unresolved_with_the_reason():
    plan = fit(FLOWS["train-eval-export"], "dino", CATALOG)
    with pytest.raises(Unresolved, match="recorded no checkpoint"):
        resolve(plan, plan.stage("export"), {}, {"train": StageResult("/r", None)})


def test_a_reference_to_a_later_stage_or_an_unknown_input_is_an_error_in_the_data():
    body = {
        "name": "x",
        "summary": "s",
        "stages": [{"name": "a", "action": "train", "overrides": {"k": "{stages.b.results}"}}],
    }
    with pytest.raises(ValueError, match="names no earlier stage"):
        Workflow.model_validate(body)
    body["stages"][0]["overrides"] = {"k": "{inputs.nope}"}
    with pytest.raises(ValueError, match="no input named"):
        Workflow.model_validate(body)


def test_a_condition_runs_a_stage_only_when_the_earlier_metric_passes():
    flow = Workflow.model_validate(
        {
            "name": "gated",
            "summary": "s",
            "stages": [
                {"name": "train", "action": "train"},
                {
                    "name": "export",
                    "action": "export",
                    "run_if": {"stage": "train", "metric": "val_loss", "op": "<", "value": 0.5},
                },
            ],
        }
    )
    plan = fit(flow, "dino", CATALOG)
    export = plan.stage("export")
    assert condition_holds(plan, export, {"train": StageResult(metrics={"val_loss": 0.3})})[0] is True
    runs, why = condition_holds(plan, export, {"train": StageResult(metrics={"val_loss": 0.7})})
    assert runs is False and "does not hold (val_loss = 0.7)" in why
    assert condition_holds(plan, export, {"train": StageResult()})[0] is False


def _ready_state():
    from taobot.intake import ChoosePlatform, ConfirmImage, SetRoot

    state = ok(
        new("dino"), ChoosePlatform("slurm"), SetRoot("train", "/lustre/d/train"), SetRoot("eval", "/lustre/d/eval")
    )
    return ok(state, ConfirmImage())


def test_the_gate_names_each_stage_whose_image_is_unconfirmed_or_whose_paths_preflight_did_not_check():
    state = _ready_state()
    plan = fit(FLOWS["train-eval-export"], "dino", CATALOG)
    images = {s.base: StageImage("nvcr.io/x:1", "image") for s in plan.stages}
    checks = {c.stage: c for c in check_stages(state, plan, images, CATALOG)}
    assert all(not c.ok for c in checks.values())
    assert any("image not confirmed" in p for p in checks["export"].problems)
    assert any("not verified by the preflight" in p for p in checks["evaluate"].problems)
    # Every path verified and every image chosen: the export stage needs nothing but the train checkpoint.
    from taobot.intake import dataset_inputs

    results = [{"scope": "dataset", "ok": True, "key": k, "label": k} for k in dataset_inputs(state, CATALOG)]
    state.preflight = PreflightRecord(status="passed", fingerprint="f", results=results, by="U", started_at=0)
    chosen = {s.base: StageImage("nvcr.io/x:1", "image", "nvcr.io/x:1") for s in plan.stages}
    assert all(c.ok for c in check_stages(state, plan, chosen, CATALOG)), check_stages(state, plan, chosen, CATALOG)


def test_the_preflight_of_the_deft_loop_covers_the_train_stages_paths_and_the_gate_reads_them():
    from taobot.intake import ChoosePlatform, ConfirmImage, SetRoot, SetSpecInput, dataset_inputs
    from taobot.workflows import stage_paths

    state = ok(
        new("cosmos-rl", "evaluate"),
        ChoosePlatform("slurm"),
        SetRoot("eval", "/lustre/d/kpi"),
        SetSpecInput("model.model_name", "/lustre/d/base"),
    )
    # The train root is the train stage's: the thread's own action (the baseline evaluate) has no train role.
    state = ok(state, ConfirmImage()).model_copy(
        update={"roots": {"train": "/lustre/d/train", "eval": "/lustre/d/kpi"}}
    )
    plan = fit(FLOWS["deft-loop"], "cosmos-rl", CATALOG)
    extra = stage_paths(state, plan, CATALOG)
    # The thread's action is the baseline evaluate: its own paths are checked as the thread's; the train stage's
    # training paths (and the KPI paths its validation uses) are the preflight's extra paths, with the fields
    # the annotation file must have.
    assert extra["train: custom.train_dataset.annotation_path"] == ("/lustre/d/train/annotations.json", ("video_fps",))
    assert extra["train: custom.train_dataset.media_path"] == ("/lustre/d/train", ())
    assert not any(path in dataset_inputs(state, CATALOG).values() for path, _ in extra.values())
    assert not any(label.startswith("evaluate") for label in extra)  # its paths are the baseline's
    own = [{"scope": "dataset", "ok": True, "key": k, "label": k} for k in dataset_inputs(state, CATALOG)]
    chosen = {s.base: StageImage("nvcr.io/x:1", "image", "nvcr.io/x:1") for s in plan.stages}

    def checks(results):
        state.preflight = PreflightRecord(status="passed", fingerprint="f", results=results, by="U", started_at=0)
        return {c.stage: c for c in check_stages(state, plan, chosen, CATALOG)}

    refused = checks(own)
    assert any("custom.train_dataset.annotation_path" in p for p in refused["train"].problems)
    assert refused["baseline"].ok
    staged = [{"scope": "dataset", "ok": True, "key": label, "label": label} for label in extra]
    assert all(c.ok for c in checks(own + staged).values())
    failed = staged[:-1] + [dict(staged[-1], ok=False)]
    assert not checks(own + failed)["train"].ok  # a failed check of a stage's path keeps that stage shut


def test_a_stage_is_claimed_once_per_run_whoever_asks(tmp_path):
    store = Store(tmp_path / "t.db", SecretBox(Fernet.generate_key()))
    store.add_workflow_run("i1", "train-eval-export", "dino", {"stages": []}, {})
    run = store.start_workflow_run("i1", 0)
    assert store.claim_stage("i1", run, 0, "train", "i1-r1s0", "starting") is True
    assert store.claim_stage("i1", run, 0, "train", "i1-r1s0", "starting") is False
    again = store.start_workflow_run("i1", 1)  # a resume: a new run, whose stage 1 is its own
    assert again == run + 1 and store.claim_stage("i1", again, 1, "evaluate", "i1-r2s1", "starting") is True
    assert store.stage_of_launch("i1-r1s0").name == "train"
    assert [r.run for r in store.stage_rows("i1")] == [run, again]


def test_after_a_restart_a_stage_whose_end_was_seen_but_not_recorded_is_recorded_and_nothing_is_submitted(tmp_path):
    """The monitor stored the train launch as Succeeded, then the bot died before the stage's end was recorded:
    the sweep's advance hands that launch's end to be recorded (once it is, the next stage is claimed) and
    submits nothing itself."""
    import threading
    from collections import defaultdict
    from types import SimpleNamespace

    from taobot.launches import JobState
    from taobot.services.workflow_runs import plan_to_json
    from taobot.services.workflows import Workflows
    from tests.builders import launch_record

    store = Store(tmp_path / "t.db", SecretBox(Fernet.generate_key()))
    state = _ready_state()
    store.save_intake(state, "U_OWNER", "start")
    plan = fit(FLOWS["train-eval-export"], "dino", CATALOG)
    store.add_workflow_run(state.id, "train-eval-export", "dino", plan_to_json(plan), {})
    run = store.start_workflow_run(state.id, 0)
    store.claim_stage(state.id, run, 0, "train", f"{state.id}-r1s0", "starting")
    store.update_stage(state.id, run, 0, state="running")
    state.status = "launched"
    store.add_launch(
        launch_record(id=f"{state.id}-r1s0", intake_id=state.id, state=JobState.SUCCEEDED), state, "U_OWNER"
    )

    handed = []
    work = SimpleNamespace(submit=lambda fn, *args: handed.append((fn.__name__, args)))
    locks = defaultdict(threading.Lock)
    desk = SimpleNamespace(store=store, lock=lambda i: locks[i], catalog=CATALOG)
    flows = Workflows(desk, work, intake=None, control=None, flows=FLOWS)
    flows._advance(state.id, "taobot")
    assert handed == [("_ended", (f"{state.id}-r1s0",))]
    assert [(r.name, r.state) for r in store.stage_rows(state.id)] == [("train", "running")]  # nothing claimed


def test_after_a_restart_a_running_stage_whose_launch_message_was_never_posted_gets_it_once(tmp_path):
    """The bot submitted the train stage and stopped before posting its launch message: the sweep posts it,
    once; a second sweep posts nothing."""
    import threading
    from collections import defaultdict
    from types import SimpleNamespace

    from taobot.services.workflow_runs import plan_to_json
    from taobot.services.workflows import Workflows
    from tests.builders import launch_record

    store = Store(tmp_path / "t.db", SecretBox(Fernet.generate_key()))
    state = _ready_state()
    store.save_intake(state, "U_OWNER", "start")
    plan = fit(FLOWS["train-eval-export"], "dino", CATALOG)
    store.add_workflow_run(state.id, "train-eval-export", "dino", plan_to_json(plan), {})
    run = store.start_workflow_run(state.id, 0)
    store.claim_stage(state.id, run, 0, "train", f"{state.id}-r1s0", "starting")
    state.status = "launched"
    store.add_launch(launch_record(id=f"{state.id}-r1s0", intake_id=state.id), state, "U_OWNER")

    posts, looked = [], []

    def find_posted(channel, thread_ts, launch_id, slot):
        looked.append((launch_id, slot))
        return None  # not in the thread: the stopped bot never posted it

    messenger = SimpleNamespace(
        post=lambda channel, view, thread_ts=None, metadata=None: posts.append((view.launch.id, metadata)),
        find_posted=find_posted,
    )
    locks = defaultdict(threading.Lock)
    desk = SimpleNamespace(store=store, lock=lambda i: locks[i], catalog=CATALOG, messenger=messenger)
    flows = Workflows(desk, SimpleNamespace(submit=None), intake=None, control=None, flows=FLOWS)
    flows._advance(state.id, "taobot")
    flows._advance(state.id, "taobot")
    launch_id = f"{state.id}-r1s0"
    assert looked == [(launch_id, "launched")]
    assert posts == [
        (launch_id, {"event_type": "taobot_workflow_stage", "event_payload": {"launch": launch_id, "slot": "launched"}})
    ]
    assert [(r.name, r.state) for r in store.stage_rows(state.id)] == [("train", "running")]  # nothing claimed


def test_a_bank_workflow_with_script_steps_keeps_them_as_not_runnable():
    doc = {
        "type": "workflow",
        "prerequisites": {"required": [{"name": "kpi", "description": "k"}]},
        "iteration_defaults": {"count": 2},
        "stages": {
            "init": [
                {
                    "name": "zero_shot",
                    "action": "evaluate",
                    "skill": "cosmos-rl",
                    "spec_overrides": {"dataset.media_dir": "{kpi}"},
                }
            ],
            "iteration": [
                {"name": "gaps", "type": "cpu", "script": "x.py"},
                {"name": "train", "action": "train", "skill": "cosmos-rl", "spec_overrides": {"a": "{storage_root}/t"}},
            ],
        },
    }
    flow = bank_workflow("mine", doc, "mine.yaml")
    assert flow.models == ("cosmos-rl",) and flow.iterations == 2
    assert flow.stage("zero_shot").overrides == {"dataset.media_dir": "{inputs.kpi}"}
    assert flow.stage("gaps").action is None and "x.py" in flow.stage("gaps").note
    assert "storage_root" in flow.stage("train").note  # a value taobot does not have: not runnable
    plan = fit(flow, "cosmos-rl", CATALOG)
    assert [s.name for s in plan.stages] == ["zero_shot"] and len(plan.left_out) == 2


def test_a_broken_bank_workflow_names_its_file_and_field():
    with pytest.raises(CatalogError, match="broken.yaml"):
        bank_workflow("b", {"type": "workflow", "stages": {"init": [{"action": "train"}]}}, "broken.yaml")


if (BANK / "applications").is_dir():  # collected only where the published snapshot is (like the snapshot tests)

    def test_the_published_banks_deft_workflow_reads_and_fits_cosmos_rl():
        flows, notes = bank_workflows(BANK)
        deft = flows["deft-cosmos-rl"]
        plan = fit(deft, "cosmos-rl", CATALOG)
        assert [s.action for s in plan.stages[:3]] == ["evaluate", "train", "evaluate"]
        assert any("analyze_gaps.py" in line for line in plan.left_out)
        assert any(n.startswith("normal-train") for n in notes)
