"""Failure triage from the platform's state and real-shaped log tails: the kind, the deciding line, the frames.

The tails are the shapes these failures print: SLURM's slurmstepd and srun lines, the NVIDIA driver's Xid
kernel messages, NCCL's `NCCL WARN` lines and torch's watchdog, CUDA's ECC and out-of-memory errors, the
messages Hydra and OmegaConf print for a spec TAO refuses, a spec path that does not exist, argparse's
usage errors, Docker's pull errors as the Docker backend reports them, and torchrun's summary after a rank
raised.
"""

from __future__ import annotations

import pytest

from taobot.backends.base import infrastructure_cause
from taobot.launches import JobState
from taobot.triage import FailureKind, tracebacks, triage

INFRA, PROGRAM, CONFIG = FailureKind.INFRASTRUCTURE, FailureKind.PROGRAM, FailureKind.CONFIGURATION

TRAIN_START = [
    "taobot launch 0a1b2c3d-12345: 2026-03-02T10:00:00Z on node01",
    "[cosmos-rl] tao-standin starting on node01 (pid 4242, slurm job 118)",
    "Epoch 0:  12%|█▏        | 120/1000 [01:02<07:35,  1.93it/s, loss=0.812, v_num=0]",
]

PROGRAM_TRACEBACK = TRAIN_START + [
    "Error executing job with overrides: []",
    "Traceback (most recent call last):",
    '  File "/usr/local/lib/python3.10/dist-packages/nvidia_tao_pytorch/cv/dino/scripts/train.py", line 139, in main',
    "    run_experiment(experiment_config=cfg,",
    '  File "/usr/local/lib/python3.10/dist-packages/nvidia_tao_pytorch/cv/dino/scripts/train.py", line 118, in run_experiment',
    "    trainer.fit(pt_model, dm, ckpt_path=resume_ckpt)",
    '  File "/usr/local/lib/python3.10/dist-packages/nvidia_tao_pytorch/cv/dino/model/pl_dino_model.py", line 211, in training_step',
    "    loss_dict = self.criterion(outputs, targets)",
    '  File "/usr/local/lib/python3.10/dist-packages/nvidia_tao_pytorch/cv/dino/model/criterion.py", line 97, in forward',
    "    weight_dict[k] * loss_dict[k] for k in loss_dict.keys() if k in weight_dict",
    "KeyError: 'loss_bbox_enc'",
    "",
    "Set the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace.",
]


def test_a_traceback_after_training_started_is_a_program_failure_with_its_last_frames():
    got = triage(JobState.FAILED, "FAILED", None, 1, PROGRAM_TRACEBACK)
    assert got.kind is PROGRAM and not got.retriable
    assert got.evidence == "KeyError: 'loss_bbox_enc'"
    assert len(got.frames) == 3
    assert got.frames[-1].startswith('File "/usr/local/lib/python3.10/dist-packages/nvidia_tao_pytorch/cv/dino/model')
    assert "line 97, in forward" in got.frames[-1] and "weight_dict[k] * loss_dict[k]" in got.frames[-1]
    assert "line 139, in main" not in "".join(got.frames)  # only the last three


def test_torch_rank_prefixes_and_the_torchrun_summary_do_not_hide_the_root_exception():
    tail = [
        "[rank1]: Traceback (most recent call last):",
        '[rank1]:   File "/opt/nvidia/tools/train.py", line 52, in <module>',
        "[rank1]:     main()",
        '[rank1]:   File "/opt/nvidia/tools/train.py", line 47, in main',
        "[rank1]:     validate(model)",
        "[rank1]: ValueError: num_classes must be 80 for this checkpoint, got 81",
        "[rank0]:[E302 10:03:11.000000000 ProcessGroupNCCL.cpp:616] [Rank 0] Watchdog caught collective "
        "operation timeout: WorkNCCL(SeqNum=912, OpType=ALLREDUCE, NumelIn=1, NumelOut=1, Timeout(ms)=600000) "
        "ran for 600076 milliseconds before timing out.",
        "Traceback (most recent call last):",
        '  File "/usr/local/bin/torchrun", line 8, in <module>',
        "    sys.exit(main())",
        "torch.distributed.elastic.multiprocessing.errors.ChildFailedError:",
        "============================================================",
        "train.py FAILED",
    ]
    got = triage(JobState.FAILED, "FAILED", None, 1, tail)
    # Rank 0's timeout is the echo of rank 1's crash: the program failed, not the network.
    assert got.kind is PROGRAM
    assert got.evidence == "ValueError: num_classes must be 80 for this checkpoint, got 81"
    assert any("line 47, in main" in f for f in got.frames)


@pytest.mark.parametrize(
    ("native", "reason", "cause"),
    [
        ("NODE_FAIL", "a node of the job failed (infrastructure; likely retriable)", "node failure"),
        ("PREEMPTED", "preempted by the scheduler (infrastructure; likely retriable)", "preempted by the scheduler"),
        ("BOOT_FAIL", None, "boot failure"),
    ],
)
def test_slurm_states_of_the_cluster_are_infrastructure_decided_by_the_state(native, reason, cause):
    got = triage(JobState.FAILED, native, reason, 0, PROGRAM_TRACEBACK)  # whatever the log says
    assert got.kind is INFRA and got.retriable and got.cause == cause
    assert got.evidence.startswith(f"platform state {native}")


INFRA_TAILS = [
    (
        "Xid 79",
        [
            *TRAIN_START,
            "[2417.512331] NVRM: Xid (PCI:0000:3b:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.",
            "RuntimeError: CUDA error: unspecified launch failure",
        ],
        "GPU / driver",
        "NVRM: Xid (PCI:0000:3b:00): 79",
    ),
    (
        "Xid 48 (double bit ECC)",
        [
            *TRAIN_START,
            "NVRM: Xid (0000:b1:00): 48, pid=31337, name=python, An uncorrectable double bit error (DBE) has been "
            "detected on GPU in the framebuffer at partition 6, subpartition 0.",
        ],
        "GPU / driver",
        "Xid (0000:b1:00): 48",
    ),
    (
        "CUDA ECC",
        [
            *TRAIN_START,
            "Traceback (most recent call last):",
            '  File "/opt/nvidia/tools/train.py", line 88, in train_step',
            "    loss.backward()",
            "RuntimeError: CUDA error: uncorrectable ECC error encountered",
            "CUDA kernel errors might be asynchronously reported at some other API call, so the stacktrace below "
            "might be incorrect.",
        ],
        "GPU memory (ECC)",
        "RuntimeError: CUDA error: uncorrectable ECC error encountered",
    ),
    (
        "NCCL over InfiniBand",
        [
            *TRAIN_START,
            "node03:3468:3905 [4] transport/net_ib.cc:1295 NCCL WARN NET/IB : Got completion from peer "
            "10.216.210.236<54862> with error 12, opcode 0, len 0, vendor err 129 (Recv)",
            "node03:3468:3905 [4] NCCL INFO transport/net.cc:1302 -> 6",
            "node03:3468:3905 [4] NCCL INFO proxy.cc:698 -> 6",
            "Traceback (most recent call last):",
            '  File "/opt/nvidia/tools/train.py", line 90, in train_step',
            "    dist.all_reduce(loss)",
            "torch.distributed.DistBackendError: NCCL error in: ../torch/csrc/distributed/c10d/NCCLUtils.hpp:275, "
            "remote process exited or there was a network error, NCCL version 2.19.3",
        ],
        "InfiniBand",
        "NCCL WARN NET/IB : Got completion from peer 10.216.210.236<54862> with error 12",
    ),
    (
        "NCCL system error",
        [
            *TRAIN_START,
            "RuntimeError: NCCL error in: ../torch/csrc/distributed/c10d/ProcessGroupNCCL.cpp:1269, unhandled "
            "system error, NCCL version 2.14.3",
            "ncclSystemError: System call (e.g. socket, malloc) or external library call failed or device error.",
        ],
        "NCCL system error",
        "ncclSystemError: System call",
    ),
    (
        "NCCL watchdog with no traceback",
        [
            *TRAIN_START,
            "[E ProcessGroupNCCL.cpp:475] [Rank 3] Watchdog caught collective operation timeout: "
            "WorkNCCL(SeqNum=12345, OpType=ALLREDUCE, NumelIn=1, NumelOut=1, Timeout(ms)=1800000) ran for "
            "1800412 milliseconds before timing out.",
            "[E ProcessGroupNCCL.cpp:489] Some NCCL operations have failed or timed out.",
        ],
        "NCCL timeout",
        "Watchdog caught collective operation timeout",
    ),
    (
        "slurmstepd node failure",
        [
            *TRAIN_START,
            "srun: error: Node failure on node02",
            "slurmstepd: error: *** JOB 1184 ON node01 CANCELLED AT 2026-03-02T10:41:07 DUE TO NODE FAILURE, "
            "SEE SLURMCTLD LOG FOR DETAILS ***",
        ],
        "node failure",
        "DUE TO NODE FAILURE",
    ),
    (
        "registry unreachable",
        [
            "pyxis: importing docker image: nvcr.io#nvidia/tao/tao-toolkit:6.0.0-pyt",
            "slurmstepd: error: pyxis: child 2112 failed with error code: 1",
            "slurmstepd: error: pyxis: failed to import docker image",
            "slurmstepd: error: pyxis: printing enroot log file:",
            "slurmstepd: error: pyxis:     [ERROR] URL https://nvcr.io/v2/nvidia/tao/tao-toolkit/manifests/6.0.0-pyt "
            "returned error code: 503 Service Unavailable",
        ],
        "image registry unreachable",
        "returned error code: 503 Service Unavailable",
    ),
]


@pytest.mark.parametrize(("name", "tail", "cause", "deciding"), INFRA_TAILS, ids=[t[0] for t in INFRA_TAILS])
def test_infrastructure_failures_in_the_log_get_retry_and_name_their_line(name, tail, cause, deciding):
    got = triage(JobState.FAILED, "FAILED", None, 1, tail)
    assert got.kind is INFRA and got.retriable, got
    assert got.cause == cause
    assert deciding in got.evidence
    assert got.frames == ()


def test_an_application_xid_alone_points_at_the_program_not_the_gpu():
    tail = [
        *TRAIN_START,
        "NVRM: Xid (PCI:0000:3b:00): 31, pid=31337, name=python, Ch 00000010, intr 10000000. MMU Fault: ENGINE GRAPHICS "
        "GPCCLIENT_T1_0 faulted @ 0x7f12_34560000. Fault is of type FAULT_PDE ACCESS_TYPE_READ",
        "Traceback (most recent call last):",
        '  File "/opt/nvidia/tools/train.py", line 88, in train_step',
        "    out = model(x)",
        "RuntimeError: CUDA error: an illegal memory access was encountered",
    ]
    got = triage(JobState.FAILED, "FAILED", None, 1, tail)
    assert got.kind is PROGRAM and got.evidence == "RuntimeError: CUDA error: an illegal memory access was encountered"


CONFIG_TAILS = [
    (
        "OmegaConf key",
        [
            "Error executing job with overrides: []",
            "Traceback (most recent call last):",
            '  File "/usr/local/lib/python3.10/dist-packages/nvidia_tao_pytorch/cv/dino/scripts/train.py", line 97, in main',
            "    cfg = OmegaConf.merge(schema, cfg)",
            "omegaconf.errors.ConfigKeyError: Key 'batchsize' not in 'DINODatasetConfig'",
            "    full_key: dataset.batchsize",
            "    object_type=DINODatasetConfig",
            "",
            "Set the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace.",
        ],
        "spec error",
        "omegaconf.errors.ConfigKeyError: Key 'batchsize' not in 'DINODatasetConfig'",
    ),
    (
        "Hydra schema merge (no traceback)",
        [
            "Error merging 'experiment' with schema",
            "Key 'num_epoch' not in 'ExperimentConfig'",
            "    full_key: num_epoch",
            "    object_type=ExperimentConfig",
            "",
            "Set the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace.",
        ],
        "spec error",
        "Key 'num_epoch' not in 'ExperimentConfig'",
    ),
    (
        "OmegaConf validation",
        [
            "Error executing job with overrides: ['train.num_epochs=ten']",
            "Traceback (most recent call last):",
            '  File "/usr/local/lib/python3.10/dist-packages/nvidia_tao_pytorch/core/hydra/hydra_runner.py", line 107, in wrapper',
            "    _run_hydra(",
            "omegaconf.errors.ValidationError: Value 'ten' of type 'str' could not be converted to Integer",
            "    full_key: train.num_epochs",
        ],
        "spec error",
        "omegaconf.errors.ValidationError: Value 'ten'",
    ),
    (
        "spec path missing",
        [
            "Traceback (most recent call last):",
            '  File "/usr/local/lib/python3.10/dist-packages/nvidia_tao_pytorch/core/hydra/hydra_runner.py", line 71, in wrapper',
            "    with open(args.experiment_spec_file) as f:",
            "FileNotFoundError: [Errno 2] No such file or directory: '/results/0a1b2c3d-12345/specs/train.yaml'",
        ],
        "file missing",
        "FileNotFoundError: [Errno 2] No such file or directory: '/results/0a1b2c3d-12345/specs/train.yaml'",
    ),
    (
        "argparse",
        [
            "usage: cosmos-rl [-h] --config CONFIG [--results_dir RESULTS_DIR]",
            "cosmos-rl: error: unrecognized arguments: --num-gpu 8",
        ],
        "bad arguments",
        "cosmos-rl: error: unrecognized arguments: --num-gpu 8",
    ),
    (
        "CUDA out of memory",
        [
            *TRAIN_START,
            "Traceback (most recent call last):",
            '  File "/opt/nvidia/tools/train.py", line 88, in train_step',
            "    loss.backward()",
            "torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.15 GiB total "
            "capacity; 76.28 GiB already allocated; 1.45 GiB free; 77.50 GiB reserved in total by PyTorch)",
        ],
        "GPU out of memory",
        "torch.cuda.OutOfMemoryError: CUDA out of memory",
    ),
    (
        "cgroup OOM kill",
        [
            *TRAIN_START,
            "/var/spool/slurmd/job01184/slurm_script: line 21: 4242 Killed                  cosmos-rl --config ...",
            "slurmstepd: error: Detected 1 oom_kill event in StepId=1184.batch. Some of the step tasks have been OOM "
            "Killed.",
        ],
        "out of memory",
        "Detected 1 oom_kill event in StepId=1184.batch",
    ),
    (
        "time limit",
        ["slurmstepd: error: *** JOB 1190 ON node01 CANCELLED AT 2026-03-02T14:00:01 DUE TO TIME LIMIT ***"],
        "time limit",
        "DUE TO TIME LIMIT",
    ),
    (
        "entrypoint missing",
        ["/var/spool/slurmd/job01192/slurm_script: line 19: cosmos-rl: command not found"],
        "entrypoint missing in the container",
        "cosmos-rl: command not found",
    ),
    (
        "the stand-in's missing config",
        ["[dino] error: config file not found: /home/taouser/tao/x/specs/train.yaml"],
        "file missing",
        "config file not found",
    ),
]


@pytest.mark.parametrize(("name", "tail", "cause", "deciding"), CONFIG_TAILS, ids=[t[0] for t in CONFIG_TAILS])
def test_configuration_failures_get_no_retry_and_name_their_line(name, tail, cause, deciding):
    got = triage(JobState.FAILED, "FAILED", None, 1, tail)
    assert got.kind is CONFIG and not got.retriable, got
    assert got.cause == cause and deciding in got.evidence


@pytest.mark.parametrize(
    ("reason", "kind", "cause"),
    [
        # What DockerBackend says when the daemon cannot pull (the stream's error, or the API's message).
        (
            "could not pull `nvcr.io/nvidia/tao/tao-toolkit:9.9.9-pyt` with DOCKER_USERNAME / NGC_KEY: manifest for "
            "nvcr.io/nvidia/tao/tao-toolkit:9.9.9-pyt not found: manifest unknown: manifest unknown",
            CONFIG,
            "image not found or not allowed",
        ),
        (
            "could not pull `private/tao:1` (no registry login was given: set DOCKER_USERNAME and NGC_KEY): pull "
            "access denied for private/tao, repository does not exist or may require 'docker login': denied: "
            "requested access to the resource is denied",
            CONFIG,
            "image not found or not allowed",
        ),
        (
            'could not pull `nvcr.io/nvidia/tao/tao-toolkit:6.0.0-pyt`: Get "https://nvcr.io/v2/": net/http: TLS '
            "handshake timeout",
            INFRA,
            "image registry unreachable",
        ),
        # Kubernetes' waiting reason, as the backend puts it in the reason.
        (
            'ErrImagePull: rpc error: code = Unknown desc = failed to pull and unpack image "nvcr.io/x/y:1": failed '
            'to resolve reference "nvcr.io/x/y:1": nvcr.io/x/y:1: not found',
            INFRA,
            "image pull",
        ),
    ],
)
def test_image_pull_errors_tell_a_missing_image_from_an_unreachable_registry(reason, kind, cause):
    got = triage(JobState.FAILED, "submit failed", reason, None, ())
    assert got.kind is kind and got.cause == cause
    assert got.evidence.startswith("could not pull") or got.evidence.startswith("ErrImagePull")


def test_the_failed_runs_own_line_decides_when_nothing_else_does():
    tail = ["[cosmos-rl] epoch 1/3 loss=0.5000", "[cosmos-rl] training failed: exit code 3"]
    got = triage(JobState.FAILED, "FAILED", None, 3, tail)
    assert got.kind is PROGRAM and got.evidence == "[cosmos-rl] training failed: exit code 3"
    got = triage(JobState.FAILED, "COMPLETED", "TAO's status file reports failure: standin exit code 4", 0, ())
    assert got.kind is PROGRAM and "status file reports failure" in got.evidence
    nothing = triage(JobState.FAILED, "FAILED", None, None, ())
    assert nothing.kind is FailureKind.UNKNOWN and not nothing.retriable and nothing.evidence == "platform state FAILED"


@pytest.mark.parametrize("state", [JobState.SUCCEEDED, JobState.CANCELLED, JobState.UNKNOWN, JobState.RUNNING])
def test_only_failures_are_triaged(state):
    assert triage(state, "NODE_FAIL", None, 1, PROGRAM_TRACEBACK) is None


def test_a_traceback_cut_at_the_top_of_the_tail_still_gives_its_frames():
    cut = PROGRAM_TRACEBACK[-9:]  # the tail began inside the traceback, at a frame
    assert not any(line.startswith("Traceback") for line in cut)
    (tb,) = tracebacks(cut)
    assert tb.exception == "KeyError: 'loss_bbox_enc'" and len(tb.frames) == 3


def test_the_backends_cause_words_come_from_the_same_triage():
    assert infrastructure_cause("NODE_FAIL", ()) == "node failure"
    assert infrastructure_cause("FAILED", ["slurmstepd: error: pyxis: failed to import docker image"]) == "image pull"
    assert infrastructure_cause("FAILED", ["ValueError: bad learning rate"]) is None


# --------------------------------------------------------------------------- a submit the platform refused

SUBMIT_CASES = [
    # (what the backend raised, unreachable, kind, cause)
    (
        "could not pull `127.0.0.1:5000/tao/missing:1` (no registry login was given: set DOCKER_USERNAME and NGC_KEY): "
        "manifest for 127.0.0.1:5000/tao/missing:1 not found: manifest unknown: manifest unknown",
        False,
        FailureKind.CONFIGURATION,
        "image not found or not allowed",
    ),
    (
        "could not pull `nvcr.io/nvidia/tao/tao-toolkit:7.1.0-pyt` with DOCKER_USERNAME / NGC_KEY: "
        "unauthorized: authentication required",
        False,
        FailureKind.CONFIGURATION,
        "image not found or not allowed",
    ),
    (
        'could not pull `registry.invalid/tao:1`: Get "https://registry.invalid/v2/": dial tcp: lookup '
        "registry.invalid on 127.0.0.53:53: no such host",
        False,
        FailureKind.INFRASTRUCTURE,
        "image registry unreachable",
    ),
    (
        "could not pull `127.0.0.1:5000/tao:1`: received unexpected HTTP status: 503 Service Unavailable",
        False,
        FailureKind.INFRASTRUCTURE,
        "image registry unreachable",
    ),
    (
        "sbatch refused the job: sbatch: error: Batch job submission failed: Invalid partition name specified",
        False,
        FailureKind.CONFIGURATION,
        "partition unknown",
    ),
    (
        "sbatch refused the job: sbatch: error: Batch job submission failed: Invalid account or account/partition "
        "combination specified",
        False,
        FailureKind.CONFIGURATION,
        "account or QOS refused",
    ),
    (
        "sbatch refused the job: sbatch: error: Batch job submission failed: Requested node configuration is not "
        "available",
        False,
        FailureKind.CONFIGURATION,
        "request above the partition's limits",
    ),
    (
        "sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)",
        True,
        FailureKind.INFRASTRUCTURE,
        "scheduler unreachable",
    ),
    (
        'creating the Pod: admission webhook "validate.kyverno.svc-fail" denied the request: images must come from '
        "nvcr.io",
        True,
        FailureKind.CONFIGURATION,
        "refused by admission",
    ),
    (
        'pods "tao-abc" is forbidden: exceeded quota: gpu-quota, requested: requests.nvidia.com/gpu=8, limited: 4',
        True,
        FailureKind.CONFIGURATION,
        "refused by admission",
    ),
    (
        'Docker refused to start the container: could not select device driver "" with capabilities: [[gpu]]',
        False,
        FailureKind.CONFIGURATION,
        "GPU runtime missing on the Docker host",
    ),
    ("SSH command failed: TimeoutError: timed out", True, FailureKind.INFRASTRUCTURE, "platform unreachable"),
    ("the platform said no", False, FailureKind.UNKNOWN, "refusal not recognised"),
]


@pytest.mark.parametrize(("message", "unreachable", "kind", "cause"), SUBMIT_CASES)
def test_a_refused_submit_is_triaged_from_the_platforms_words(message, unreachable, kind, cause):
    from taobot.triage import submit_triage

    found = submit_triage(message, unreachable=unreachable)
    assert (found.kind, found.cause) == (kind, cause), found
    assert found.evidence and found.evidence in " ".join(message.split())
    assert found.retriable is (kind is FailureKind.INFRASTRUCTURE)


def test_a_refused_submits_reply_shows_the_deciding_line_and_retry_only_for_infrastructure():
    import json

    from taobot.slack.render import render
    from taobot.triage import submit_triage
    from taobot.views import SubmitFailed
    from tests.builders import launch_record
    from tests.test_blocks import assert_message_ok

    for message, unreachable, kind, cause in SUBMIT_CASES:
        found = submit_triage(message, unreachable)
        row = launch_record(state=JobState.FAILED, native="submit failed", reason=message, job_id="")
        rendered = render(SubmitFailed(row, "Local Docker", found, unreachable, retry_offered=found.retriable))
        assert_message_ok(rendered)
        text = json.dumps(rendered)
        assert f"*Failure triage: {kind.value}* ({cause})" in text and "Decided by:" in text
        assert "Nothing is running." in text and ("Could not reach" in text) is unreachable
        assert ('"action_id": "retry"' in text) is (kind is FailureKind.INFRASTRUCTURE), text


def test_an_rbac_refusal_is_the_identitys_not_admission():
    from taobot.triage import submit_triage

    found = submit_triage(
        'creating Job `tao-x` was refused (HTTP 403): jobs.batch is forbidden: User "bot" cannot create resource '
        '"jobs" in API group "batch" in the namespace "ns"'
    )
    assert (found.kind, found.cause) == (FailureKind.CONFIGURATION, "identity not permitted")
