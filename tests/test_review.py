"""The review before launch: estimates with their basis, totals over units, and flags with concrete reductions."""

from __future__ import annotations

from types import SimpleNamespace

from taobot.automl.plan import default_plan
from taobot.catalog.automl import automl_models, automl_support
from taobot.intake import Step
from taobot.review import ReviewUnit, build_review, estimate
from taobot.secrets import SecretBox, load_or_create_key
from taobot.services.reviews import plan_units
from taobot.services.workflow_runs import plan_to_json
from taobot.store import Store
from taobot.store.automl import AutomlRows
from taobot.workflows.load import embedded_workflows
from taobot.workflows.plan import fit
from tests.builders import CATALOG, drive_to


def slurm_unit(**changes) -> ReviewUnit:
    base = dict(
        label="cosmos-rl train",
        platform="SLURM",
        image="nvcr.io/nvidia/tao/tao-toolkit:6.0.0-pyt",
        gpus_per_node=8,
        time_limit_hours=4.0,
        time_limit_source="SLURM's default",
        time_limit_setting="SLURM_TIME_HOURS",
    )
    base.update(changes)
    return ReviewUnit(**base)


def test_a_single_launch_without_a_typical_duration_is_bounded_by_its_time_limit_and_says_so():
    review = build_review([slurm_unit()], title="t", monitoring="every 5 min")
    (est,) = review.estimates
    assert est.upper_bound and est.hours == 4.0
    assert "at most the requested time limit of 4 h (SLURM's default)" in est.basis
    assert "no typical duration" in est.basis
    assert review.runtime_hours == 4.0 and review.gpu_hours == 32.0 and review.upper_bound
    assert review.flags == ()


def test_no_time_limit_and_no_typical_duration_gives_no_numbers_and_says_why():
    review = build_review([slurm_unit(time_limit_hours=None)], title="t", monitoring="off")
    assert review.runtime_hours is None and review.gpu_hours is None
    assert "platform sets no time limit" in review.estimates[0].basis


def test_a_typical_duration_is_scaled_to_the_epochs_and_a_run_over_its_time_limit_gets_reductions():
    unit = slurm_unit(typical_hours=2.0, typical_epochs=10, epochs=30)
    est = estimate(unit)
    assert est.hours == 6.0 and not est.upper_bound and "scaled to 30 epochs" in est.basis
    (flag,) = build_review([unit], title="t", monitoring="m").flags
    assert "estimated at 6 h, above its time limit of 4 h" in flag
    assert "train 20 epochs instead of 30" in flag and "raise SLURM_TIME_HOURS to at least 6" in flag


def test_a_gpu_hour_limit_the_plan_exceeds_offers_fewer_gpus_or_a_shorter_limit():
    review = build_review(
        [slurm_unit()], title="t", monitoring="m", gpu_hours_limit=16, gpu_hours_limit_source="approval threshold"
    )
    (flag,) = review.flags
    assert "up to 32 GPU-hours, above the limit of 16 (approval threshold)" in flag
    assert "num_gpus=4 instead of 8" in flag and "SLURM_TIME_HOURS=2 instead of 4" in flag


def test_automl_trials_run_in_waves_and_an_overall_limit_offers_fewer_trials_more_at_once_or_fewer_epochs():
    trials = slurm_unit(
        label="trial", gpus_per_node=2, count=8, at_once=2, typical_hours=2, typical_epochs=10, epochs=10
    )
    review = build_review([trials], title="t", monitoring="m", runtime_limit_hours=5, runtime_limit_source="budget")
    assert review.runtime_hours == 8.0 and review.gpu_hours == 32.0  # 4 waves of 2 h; 8 trials × 2 GPUs × 2 h
    (flag,) = review.flags
    assert "about 8 h, above the limit of 5 h (budget)" in flag
    assert "trial: 4 runs instead of 8" in flag and "trial: 4 at a time instead of 2" in flag
    assert "trial: 6 epochs per run instead of 10" in flag


def test_workflow_stages_add_up_and_each_is_shown():
    stages = [
        slurm_unit(label="stage 1: train", typical_hours=3.0),
        slurm_unit(label="stage 2: evaluate", gpus_per_node=1, typical_hours=0.5),
    ]
    review = build_review(stages, title="t", monitoring="m")
    assert review.runtime_hours == 3.5 and review.gpu_hours == 24.5 and not review.upper_bound
    assert any("one after another" in a for a in review.assumptions)
    assert [u.label for u in review.units] == ["stage 1: train", "stage 2: evaluate"]


# --------------------------------------------------------------------------- rendered, inside Block Kit's limits


def test_a_long_plan_renders_inside_slacks_limits_and_says_what_it_left_out():
    from taobot.slack.review import MAX_REVIEW_BLOCKS, review_blocks
    from tests.fakes._blocks import validate_message_blocks

    stages = [
        slurm_unit(
            label=f"stage {i}: train",
            image="nvcr.io/nvidia/tao/" + "x" * 200 + f":{i}",
            datasets=tuple((f"dataset.key_{k}", "/lustre/" + "d" * 120) for k in range(30)),
            overrides=tuple((f"opt{k}", "1", "2") for k in range(20)),
            typical_hours=9.0,
        )
        for i in range(40)
    ]
    review = build_review(stages, title="a long workflow", monitoring="every 5 min", runtime_limit_hours=10)
    blocks = review_blocks(review)
    assert len(blocks) <= MAX_REVIEW_BLOCKS and validate_message_blocks(blocks) == []
    assert all(len(b["text"]["text"]) <= 3000 for b in blocks)
    text = "\n".join(b["text"]["text"] for b in blocks)
    assert review.hidden_units == 20 and "Review before launch: a long workflow" in text
    assert ":warning: The plan takes about 360 h, above the limit of 10 h" in text
    assert "stage 0: train: one run is estimated at 9 h, above its time limit of 4 h" in text
    assert "… and 35 more units estimated above their time limits." in text


def test_the_card_of_a_passed_preflight_shows_the_review_above_launch_and_a_gpu_hour_flag():
    from taobot.intake import SetCompute, Step, apply_all
    from taobot.review import ReviewUnit as Unit
    from taobot.slack import blocks as B
    from taobot.slack.render import render
    from taobot.views import intake_card
    from tests.builders import CATALOG, drive_to
    from tests.test_blocks import assert_message_ok
    from tests.test_gate import passed

    state = drive_to(Step.COMPLETE, "slurm", "cosmos-rl")
    state = passed(apply_all(state, [SetCompute("num_gpus", 8)], CATALOG).state)
    unit = Unit(
        "cosmos-rl train", "SLURM", state.image.chosen, 8, time_limit_hours=4, time_limit_setting="SLURM_TIME_HOURS"
    )
    review = build_review([unit], title="cosmos-rl train on SLURM", monitoring="every 5 min", gpu_hours_limit=16)
    message = render(intake_card(state, CATALOG, review=review))
    assert_message_ok(message)
    kinds = [
        "review" if "Review before launch" in str(b) else "launch" if B.LAUNCH in str(b.get("elements", "")) else ""
        for b in message["blocks"]
    ]
    assert "review" in kinds and kinds.index("review") < kinds.index("launch")
    assert "num_gpus=4 instead of 8" in str(message) and "SLURM_TIME_HOURS=2 instead of 4" in str(message)
    # Before preflight passed there is no review, whatever the caller hands over.
    state.preflight = None
    assert "Review before launch" not in str(render(intake_card(state, CATALOG, review=review)))


def test_a_launch_waiting_for_an_approval_shows_the_approver_the_review():
    from taobot.gate import GateRules
    from taobot.intake import Step
    from taobot.intake.intents import APPROVE
    from taobot.slack.render import render
    from taobot.views import intake_card
    from tests.builders import CATALOG, drive_to
    from tests.test_gate import passed

    state = passed(drive_to(Step.COMPLETE, "slurm", "cosmos-rl"))
    review = build_review([slurm_unit()], title="cosmos-rl train on SLURM", monitoring="m", gpu_hours_limit=16)
    rules = GateRules(approval="32 GPU hours is over the policy's 16", approvers=frozenset({"U9"}))
    message = str(render(intake_card(state, CATALOG, rules=rules, review=review)))
    assert "Review before launch" in message and APPROVE in message and "num_gpus=4 instead of 8" in message
    rules = GateRules(approval="over", approvers=frozenset({"U9"}), platform_refusal="not yours")
    assert "Review before launch" not in str(render(intake_card(state, CATALOG, rules=rules, review=review)))


# --------------------------------------------------------------------------- the review of each kind of thread


def _stored(tmp_path, state):
    store = Store(tmp_path / "taobot.db", SecretBox(load_or_create_key(None, tmp_path / "taobot.db.key")))
    store.save_intake(state, state.owner, "start")
    return store, SimpleNamespace(store=store, catalog=CATALOG, credential_values=lambda s: {})


def test_an_automl_threads_review_counts_its_trials_at_once_and_names_what_it_searches(tmp_path):
    model = automl_models(CATALOG)[0]
    state = drive_to(Step.COMPLETE, "slurm", model).model_copy(update={"kind": "automl"})
    store, desk = _stored(tmp_path, state)
    plan = default_plan(automl_support(CATALOG, model), state.id).with_changes(trials=6, parallel=2, epochs=3)
    AutomlRows(store).save_plan(plan)

    (unit,) = plan_units(desk, state)
    assert (unit.label, unit.count, unit.at_once, unit.epochs, unit.waves) == ("trial", 6, 2, 3, 3)
    assert all(f"`{key}`" in unit.notes[0] for key in plan.params) and plan.metric in unit.notes[0]


def test_a_workflow_threads_review_has_a_unit_per_stage_with_its_own_image_and_device(tmp_path):
    plan = fit(embedded_workflows()["train-eval-export"], "dino", CATALOG)
    state = drive_to(Step.COMPLETE, "slurm", "dino").model_copy(update={"kind": "workflow"})
    store, desk = _stored(tmp_path, state)
    images = {
        s.base: {"default": f"nvcr.io/nvidia/tao/{s.base}:1", "source": "test", "chosen": None} for s in plan.stages
    }
    images[plan.stages[-1].base]["chosen"] = "nvcr.io/nvidia/tao/mine:2"
    store.add_workflow_run(state.id, "train-eval-export", "dino", plan_to_json(plan), images)

    units = plan_units(desk, state)
    assert [u.label.split(": ")[1].split(" (")[0] for u in units] == [s.name for s in plan.stages]
    assert units[0].image == f"nvcr.io/nvidia/tao/{plan.stages[0].base}:1"
    assert units[-1].image == "nvcr.io/nvidia/tao/mine:2"
    for unit, stage in zip(units, plan.stages):
        assert (unit.gpus_per_node > 0) == (stage.device == "gpu")
