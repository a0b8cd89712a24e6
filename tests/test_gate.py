"""The gate conditions, computed from state alone (and the policy facts and the time the caller passes)."""

from __future__ import annotations

import time

import pytest

from taobot.catalog import load_catalog
from taobot.errors import GateClosedError
from taobot.gate import GateRules, compute_gate, input_fingerprint, require_open
from taobot.intake import (
    AcceptComputeDefaults,
    Approval,
    ChoosePlatform,
    ConfirmImage,
    ConfirmMounted,
    CredentialsStored,
    PreflightRecord,
    SetCompute,
    SetMonitoring,
    SetRoot,
    SetSpecInput,
    apply_all,
    dataset_inputs,
    start_intake,
)
from taobot.preflight import DatasetPath, PreflightRequest

CATALOG = load_catalog()
SLURM_CREDS = {
    "SLURM_USER": "a1",
    "SLURM_HOSTNAME": "b1",
    "SLURM_PARTITION": "c1",
    "SSH_KEY_PATH": "d1",
    "HF_TOKEN": "e1",
}


def complete_slurm_state():
    state = start_intake(CATALOG, "cosmos-rl", "train", "U1", "C1", "1.0")
    out = apply_all(
        state,
        [
            ChoosePlatform("slurm"),
            SetMonitoring(True, 5),
            CredentialsStored(SLURM_CREDS),
            ConfirmImage(),
            SetRoot("train", "/lustre/a/train"),
            SetRoot("eval", "/lustre/a/val"),
            AcceptComputeDefaults(),
        ],
        CATALOG,
    )
    assert out.state.status == "complete", out.errors
    return out.state


def passed(state, results=None):
    keys = list(dataset_inputs(state, CATALOG))
    results = (
        results
        if results is not None
        else (
            [
                {
                    "check": "slurm.login",
                    "label": "SSH login",
                    "ok": True,
                    "detail": "",
                    "remediation": "",
                    "scope": "platform",
                    "key": None,
                }
            ]
            + [
                {"check": "path", "label": k, "ok": True, "detail": "", "remediation": "", "scope": "dataset", "key": k}
                for k in keys
            ]
        )
    )
    state = state.model_copy(deep=True)
    state.preflight = PreflightRecord(
        status="passed",
        fingerprint=input_fingerprint(state, CATALOG),
        results=results,
        by="U1",
        started_at=time.time(),
        finished_at=time.time(),
    )
    return state


def cond(gate, n):
    return gate.conditions[n - 1]


def test_fresh_intake_has_every_condition_closed_but_nothing_else():
    state = start_intake(CATALOG, "cosmos-rl", "train", "U1", "C1", "1.0")
    gate = compute_gate(state, CATALOG)
    assert not gate.open
    assert [c.ok for c in gate.conditions] == [False, False, False, False, False, False, False]


def test_complete_intake_without_preflight_keeps_5_and_6_closed():
    gate = compute_gate(complete_slurm_state(), CATALOG)
    assert [c.ok for c in gate.conditions] == [True, True, True, True, False, False, True]
    assert "preflight has not run" in cond(gate, 5).detail
    with pytest.raises(GateClosedError) as err:
        require_open(complete_slurm_state(), CATALOG, "submit a job")
    assert "5. platform access check passed" in " ".join(err.value.missing)


def test_passed_preflight_for_the_same_inputs_opens_the_gate():
    gate = require_open(passed(complete_slurm_state()), CATALOG, "submit a job")
    assert gate.open and "4 input(s) mapped and verified" in cond(gate, 6).detail


@pytest.mark.parametrize(
    "change",
    [
        SetCompute("num_gpus", 2),
        SetRoot("eval", "/lustre/b/val"),
        SetSpecInput("custom.train_dataset.annotation_path", "/lustre/a/other.json"),
        ChoosePlatform("local-docker"),
        CredentialsStored({"SSH_KEY_PATH": "changed-fingerprint"}),
    ],
)
def test_changing_any_input_after_a_pass_closes_the_gate_again(change):
    state = passed(complete_slurm_state())
    changed = apply_all(state, [change], CATALOG).state
    gate = compute_gate(changed, CATALOG)
    assert not gate.open
    assert "inputs changed since the last preflight" in cond(gate, 5).detail


def test_unrelated_answer_does_not_close_the_gate():
    state = passed(complete_slurm_state())
    changed = apply_all(state, [SetMonitoring(True, 15)], CATALOG).state
    assert compute_gate(changed, CATALOG).open


def test_failed_platform_check_or_unverified_dataset_keeps_it_closed():
    state = complete_slurm_state()
    keys = list(dataset_inputs(state, CATALOG))
    bad_login = [
        {
            "check": "slurm.login",
            "label": "SSH login",
            "ok": False,
            "detail": "",
            "remediation": "",
            "scope": "platform",
            "key": None,
        }
    ]
    gate = compute_gate(passed(state, bad_login), CATALOG)
    assert not cond(gate, 5).ok
    half = [
        {
            "check": "slurm.login",
            "label": "SSH login",
            "ok": True,
            "detail": "",
            "remediation": "",
            "scope": "platform",
            "key": None,
        }
    ]
    half += [
        {"check": "path", "label": k, "ok": True, "detail": "", "remediation": "", "scope": "dataset", "key": k}
        for k in keys[:2]
    ]
    gate = compute_gate(passed(state, half), CATALOG)
    assert cond(gate, 5).ok and not cond(gate, 6).ok and keys[3] in cond(gate, 6).detail


def test_running_preflight_never_counts():
    state = passed(complete_slurm_state())
    state.preflight.status = "running"
    assert "preflight is running" in cond(compute_gate(state, CATALOG), 5).detail


def test_model_credentials_are_their_own_condition():
    state = complete_slurm_state()
    state.credentials.pop("HF_TOKEN")
    gate = compute_gate(state, CATALOG)
    assert cond(gate, 2).ok and not cond(gate, 3).ok and "HF_TOKEN" in cond(gate, 3).detail


def test_mount_confirmation_is_recorded_and_changes_the_inputs():
    state = start_intake(CATALOG, "dino", "train", "U1", "C1", "1.0")
    out = apply_all(state, [ChoosePlatform("kubernetes"), SetRoot("train", "/mnt/shared/train")], CATALOG)
    before = input_fingerprint(out.state, CATALOG)
    confirmed = apply_all(out.state, [ConfirmMounted("U7", 1700000000.0)], CATALOG)
    assert confirmed.state.mount_confirmations["/mnt/shared/train/images"].by == "U7"
    assert input_fingerprint(confirmed.state, CATALOG) != before
    again = apply_all(confirmed.state, [ConfirmMounted("U7", 1700000001.0)], CATALOG)
    assert again.errors and "No path here needs a mount confirmation" in again.errors[0]


def test_unconfirmed_mounts_fail_closed_and_confirmed_ones_pass():
    from taobot.preflight import mount_checks

    paths = (DatasetPath("train", "/mnt/shared/train"), DatasetPath("val", "s3://b/val"))
    results = mount_checks(PreflightRequest("lepton", {}, paths))
    assert [(r.key, r.ok) for r in results] == [("train", False)]
    assert "confirm mounted" in results[0].remediation
    results = mount_checks(
        PreflightRequest("lepton", {}, paths, results_uri="/mnt/out", mount_confirmed=frozenset({"/mnt/shared/train"}))
    )
    assert [(r.key, r.ok) for r in results] == [("train", True), ("results", False)]


def _result(check, label, ok, scope, key=None):
    return {"check": check, "label": label, "ok": ok, "detail": "", "remediation": "", "scope": scope, "key": key}


def failed_run(state, results):
    state = passed(state, results)
    state.preflight.status = "failed"
    return state


def test_a_preflight_that_failed_only_on_a_dataset_path_says_the_platform_check_passed():
    state = complete_slurm_state()
    keys = list(dataset_inputs(state, CATALOG))
    results = [
        _result("credentials", "Credentials", True, "credentials"),
        _result("slurm.login", "SSH login", True, "platform"),
        _result("slurm.partition", "Partition gpu", True, "platform"),
    ]
    results += [_result("path", k, k != keys[1], "dataset", k) for k in keys]
    gate = compute_gate(failed_run(state, results), CATALOG)
    assert not gate.open
    assert cond(gate, 5).ok and cond(gate, 5).detail == "passed from the bot's host"
    assert not cond(gate, 6).ok and cond(gate, 6).detail == f"not verified from the platform: {keys[1]}"
    assert not any("no platform check ran" in line for line in gate.missing)


def test_a_failed_preflight_never_opens_the_gate_even_when_no_condition_names_its_failure():
    state = complete_slurm_state()
    keys = list(dataset_inputs(state, CATALOG))
    good = [_result("slurm.login", "SSH login", True, "platform")]
    good += [_result("path", k, True, "dataset", k) for k in keys]
    # a failed results location is not a dataset input, but still keeps condition 6 shut
    gate = compute_gate(failed_run(state, good + [_result("mount", "results", False, "dataset", "results")]), CATALOG)
    assert cond(gate, 5).ok and not cond(gate, 6).ok and "results" in cond(gate, 6).detail
    gate = compute_gate(failed_run(state, good), CATALOG)
    assert not gate.open and "did not pass" in cond(gate, 5).detail
    gate = compute_gate(failed_run(state, [_result("path", k, True, "dataset", k) for k in keys]), CATALOG)
    assert not cond(gate, 5).ok and cond(gate, 5).detail == "no platform check ran"


def test_brev_without_an_instance_never_reaches_the_platform_check():
    state = start_intake(CATALOG, "dino", "train", "U1", "C1", "1.0")
    state = apply_all(
        state,
        [
            ChoosePlatform("brev"),
            SetMonitoring(False),
            CredentialsStored({"BREV_API_TOKEN": "fp"}),
            ConfirmImage(),
            SetRoot("train", "s3://b/dino/train"),
            SetRoot("eval", "s3://b/dino/val"),
            CredentialsStored({"ACCESS_KEY": "fp", "SECRET_KEY": "fp"}),
            AcceptComputeDefaults(),
        ],
        CATALOG,
    ).state
    assert state.status == "collecting"
    gate = compute_gate(state, CATALOG)
    assert not cond(gate, 2).ok and cond(gate, 2).detail == "missing: BREV_INSTANCE"
    state = apply_all(state, [CredentialsStored({"BREV_INSTANCE": "fp"})], CATALOG).state
    assert state.status == "complete" and cond(compute_gate(state, CATALOG), 2).ok


def test_changing_an_optional_setting_after_a_pass_closes_the_gate():
    state = passed(complete_slurm_state())
    changed = apply_all(state, [CredentialsStored({"SLURM_CPUS_PER_TASK": "fp-8"})], CATALOG).state
    assert "inputs changed since the last preflight" in cond(compute_gate(changed, CATALOG), 5).detail


# --------------------------------------------------------------------------- expiry, and the operator's policy


def test_a_preflight_counts_for_its_validity_and_then_expires():
    state = passed(complete_slurm_state())
    done = state.preflight.finished_at
    assert cond(compute_gate(state, CATALOG, now=done + 59 * 60), 5).ok
    expired = cond(compute_gate(state, CATALOG, now=done + 61 * 60), 5)
    assert not expired.ok
    assert "expired (it ran 61 min ago; results count for 60 min); run it again" in expired.detail
    with pytest.raises(GateClosedError):
        require_open(state, CATALOG, "submit a job", now=done + 61 * 60)
    rules = GateRules(preflight_valid_s=10 * 60)
    assert "results count for 10 min" in cond(compute_gate(state, CATALOG, rules=rules, now=done + 11 * 60), 5).detail


def test_policy_refusals_close_their_own_conditions():
    state = passed(complete_slurm_state())
    rules = GateRules(
        platform_refusal="SLURM is not open to <@U1> in <#C1>",
        image_prefixes=("registry.example.com/",),
        compute_refusal="16 GPUs in one launch is over the policy's limit of 8 per launch",
    )
    gate = compute_gate(state, CATALOG, rules=rules)
    assert [c.number for c in gate.conditions if not c.ok] == [1, 4, 7]
    assert cond(gate, 1).detail == rules.platform_refusal
    assert "is outside the allowed prefixes: `registry.example.com/`" in cond(gate, 4).detail
    assert cond(gate, 7).detail == rules.compute_refusal
    assert len(gate.conditions) == 7  # no approval asked: no eighth condition
    allowed = GateRules(image_prefixes=(state.image.chosen.split("/")[0] + "/",))
    assert compute_gate(state, CATALOG, rules=allowed).open


NEEDS_APPROVAL = GateRules(approval="16 GPUs is over the policy's 8 without an approval", approvers=frozenset({"U7"}))


def approved(state, by="U7", fingerprint=None):
    state = state.model_copy(deep=True)
    state.approval = Approval(by=by, at=1_700_000_000.0, fingerprint=fingerprint or input_fingerprint(state, CATALOG))
    return state


def test_an_approval_is_the_eighth_condition_and_counts_for_the_inputs_it_saw():
    state = passed(complete_slurm_state())
    gate = compute_gate(state, CATALOG, rules=NEEDS_APPROVAL)
    eighth = cond(gate, 8)
    assert not gate.open and [c.number for c in gate.conditions if not c.ok] == [8]
    assert (
        "16 GPUs is over the policy's 8" in eighth.detail and "approver (<@U7>) must press *Approve*" in eighth.detail
    )
    gate = compute_gate(approved(state), CATALOG, rules=NEEDS_APPROVAL)
    assert gate.open and cond(gate, 8).detail.startswith("approved by <@U7> at 2023-11-14 22:13 UTC")
    with pytest.raises(GateClosedError):
        require_open(state, CATALOG, "submit a job", rules=NEEDS_APPROVAL)
    changed = apply_all(approved(state), [SetCompute("num_gpus", 2)], CATALOG).state
    assert "inputs changed since <@U7> approved" in cond(compute_gate(changed, CATALOG, rules=NEEDS_APPROVAL), 8).detail


def test_only_a_named_approver_who_is_not_the_owner_counts():
    state = passed(complete_slurm_state())
    by_owner = compute_gate(approved(state, by=state.owner), CATALOG, rules=NEEDS_APPROVAL)
    assert not cond(by_owner, 8).ok and f"<@{state.owner}> may not approve" in cond(by_owner, 8).detail
    removed = GateRules(approval=NEEDS_APPROVAL.approval, approvers=frozenset({"U8"}))
    assert not cond(compute_gate(approved(state), CATALOG, rules=removed), 8).ok
    nobody = GateRules(approval=NEEDS_APPROVAL.approval)
    assert "the policy names no one who may approve" in cond(compute_gate(state, CATALOG, rules=nobody), 8).detail
