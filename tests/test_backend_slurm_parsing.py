"""SLURM state mapping and the one-command poll output, as printed by real sacct/squeue."""

from __future__ import annotations

import pytest

from taobot.backends.base import JobState, infrastructure_cause
from taobot.backends.slurm import hours_to_slurm, normalise, parse_exit_code, parse_poll_output
from taobot.backends.tao_status import NO_SUCCESS


@pytest.mark.parametrize(
    ("native", "state"),
    [
        ("PENDING", JobState.PENDING),
        ("RUNNING", JobState.RUNNING),
        ("COMPLETING", JobState.RUNNING),
        ("COMPLETED", JobState.SUCCEEDED),
        ("FAILED", JobState.FAILED),
        ("BOOT_FAIL", JobState.FAILED),
        ("DEADLINE", JobState.FAILED),
        ("OUT_OF_MEMORY", JobState.FAILED),
        ("NODE_FAIL", JobState.FAILED),
        ("TIMEOUT", JobState.FAILED),
        ("CANCELLED", JobState.CANCELLED),
        ("CANCELLED by 1001", JobState.CANCELLED),
        ("CANCELLED+", JobState.CANCELLED),
        ("PREEMPTED", JobState.FAILED),  # the scheduler's doing: a failure, likely retriable
        ("REVOKED", JobState.CANCELLED),
        ("SUSPENDED", JobState.PAUSED),
        ("STOPPED", JobState.PAUSED),
        ("SPECIAL_EXIT", JobState.UNKNOWN),
    ],
)
def test_every_slurm_state_maps_to_one_normalised_state(native, state):
    assert normalise(native) is state


def test_poll_output_uses_accounting_status_json_squeue_reason_and_tails():
    out = "\n".join(
        [
            "ACCT|11|COMPLETED|0:0|None",
            "ACCT|12|COMPLETED|0:0|None",
            "ACCT|13|PENDING|0:0|None",
            "ACCT|14|CANCELLED by 1001|0:15|None",
            "ACCT|15|FAILED|1:0|NonZeroExitCode",
            "END|acct",
            "SQ|13|PENDING|Resources",
            "END|squeue",
            'STATUS|11|{"status": "STARTED", "message": "Starting"}',
            'STATUS|11|{"status": "SUCCESS"}',
            'STATUS|12|{"status": "RUNNING", "epoch": 1}',
            'STATUS|12|{"status": "FAILURE", "message": "loss is nan"}',
            "TAIL|15|epoch 1|loss|0.5",
            "TAIL|15|Traceback (most recent call last):",
        ]
    )
    got = parse_poll_output(out, ["11", "12", "13", "14", "15", "16"])
    assert got["11"].state is JobState.SUCCEEDED
    assert (
        got["12"].state is JobState.FAILED and got["12"].reason == "TAO's status file reports failure: loss is nan"
    )  # COMPLETED, but the run says failure
    assert got["13"].state is JobState.PENDING and got["13"].reason == "Resources"
    assert got["14"].state is JobState.CANCELLED and got["14"].native == "CANCELLED by 1001"
    assert got["14"].exit_code is None and got["14"].reason == "ended by signal 15 (SIGTERM)"  # 0:15 is no exit 0
    assert got["15"].exit_code == 1 and got["15"].log_tail == ("epoch 1|loss|0.5", "Traceback (most recent call last):")
    assert got["16"].state is JobState.UNKNOWN  # the cluster no longer knows it


def test_time_and_exit_code_formats():
    assert hours_to_slurm(4) == "4:00:00" and hours_to_slurm(0.0167) == "0:01:00" and hours_to_slurm(3.8) == "3:48:00"
    assert parse_exit_code("1:0") == 1 and parse_exit_code("0:15") == 0 and parse_exit_code("") is None


@pytest.mark.parametrize(
    ("native", "log", "cause"),
    [
        ("NODE_FAIL", "", "node failure"),
        ("FAILED", "pyxis: failed to import docker image", "image pull"),
        ("FAILED", "Watchdog caught collective operation timeout: WorkNCCL(SeqNum=1)", "NCCL timeout"),
        ("FAILED", "NVRM: Xid (PCI:0000:3b:00): 79, GPU has fallen off the bus", "GPU / driver"),
        ("FAILED", "ValueError: bad learning rate", None),
    ],
)
def test_infrastructure_failures_are_recognised_as_retriable(native, log, cause):
    assert infrastructure_cause(native, [log]) == cause


def test_one_tail_for_many_logs_is_split_back_by_its_file_headers():
    out = "\n".join(
        [
            "ACCT|21|RUNNING|0:0|None",
            "ACCT|22|RUNNING|0:0|None",
            "END|acct",
            "END|squeue",
            "T|==> /r/a/logs/slurm-21.out <==",
            "T|epoch 1",
            "T|epoch 2",
            "T|",
            "T|==> /r/b c/logs/slurm-22.out <==",
            "T|==> not a header of ours <==",
            "T|done",
        ]
    )
    got = parse_poll_output(out, ["21", "22"], {"/r/a/logs/slurm-21.out": "21", "/r/b c/logs/slurm-22.out": "22"})
    assert got["21"].log_tail == ("epoch 1", "epoch 2")
    assert got["22"].log_tail == ("==> not a header of ours <==", "done")


@pytest.mark.parametrize(
    ("given", "directive"),
    [("gpu", "gpu"), ("gpu,cpu", "gpu,cpu"), (" gpu , cpu ", "gpu,cpu"), ("a,b,c", "a,b,c")],
)
def test_every_partition_given_reaches_sbatch(given, directive):
    from taobot.backends.base import LaunchSpec
    from taobot.backends.slurm import sbatch_script
    from taobot.catalog.schema import ResourceDefaults

    spec = LaunchSpec(
        launch_id="abcd1234-00001",
        platform="slurm",
        model="dino",
        action="train",
        image="nvcr.io/nvidia/tao/tao-toolkit:6.0.0-pyt",
        command="dino train -e {config_path}",
        config_format="yaml",
        spec={},
        datasets={},
        num_gpus=1,
        num_nodes=1,
        resources=ResourceDefaults(),
        platform_credentials={"SLURM_PARTITION": given},
        job_env={},
    )
    lines = sbatch_script(spec, "/home/u/tao-results/abcd1234-00001", "/x/spec.yaml", "none").splitlines()
    assert [line for line in lines if line.startswith("#SBATCH --partition")] == [f"#SBATCH --partition={directive}"]


def test_reasons_and_exit_codes_belong_to_the_state_they_came_with():
    out = "\n".join(
        [
            "ACCT|31|FAILED|3:0|JobHeldAdmin",  # sacct keeps the last queue reason after the job ran
            "ACCT|32|PREEMPTED|0:15|None",
            "ACCT|33|NODE_FAIL|0:0|None",
            "ACCT|34|RUNNING|0:0|None",
            "ACCT|35|COMPLETED|0:0|None",
            "ACCT|36|COMPLETED|0:0|None",
            "ACCT|37|PENDING|0:0|JobHeldAdmin",
            "ACCT|38|CANCELLED by 1001|0:0|None",  # cancelled while running: the signal is on the batch step
            "ACCT|38.batch|CANCELLED|0:15|",
            "ACCT|38.extern|COMPLETED|0:0|",
            "ACCT|39|CANCELLED by 1001|0:0|None",  # cancelled while queued: no step, no exit code
            "END|acct",
            "END|squeue",
            'STATUS|36|{"status": "RUNNING", "epoch": 3, "message": "Epoch 3 of 3 done."}',
        ]
    )
    got = parse_poll_output(out, ["31", "32", "33", "34", "35", "36", "37", "38", "39"])
    assert got["31"].state is JobState.FAILED and got["31"].reason is None and got["31"].exit_code == 3
    assert got["32"].state is JobState.FAILED and got["32"].native == "PREEMPTED"
    assert got["32"].reason.startswith("preempted by the scheduler") and "signal 15" in got["32"].reason
    assert infrastructure_cause(got["32"].native, ()) == "preempted by the scheduler"
    assert got["33"].state is JobState.FAILED and "node of the job failed" in got["33"].reason
    assert infrastructure_cause(got["33"].native, ()) == "node failure"
    assert got["34"].state is JobState.RUNNING and got["34"].exit_code is None and got["34"].reason is None
    # exit 0 is a success only with TAO's final SUCCESS record: none at all, or records without it
    assert got["35"].state is JobState.FAILED and got["35"].reason == NO_SUCCESS
    assert got["36"].state is JobState.FAILED and got["36"].reason == NO_SUCCESS
    assert got["37"].state is JobState.PENDING and got["37"].reason == "JobHeldAdmin"
    assert got["38"].exit_code is None and got["38"].reason == "ended by signal 15 (SIGTERM)"
    assert got["39"].state is JobState.CANCELLED and got["39"].exit_code is None and got["39"].reason is None
    assert "38.batch" not in got
