"""Failure triage: why a launch failed, the one line that says so, and whether a retry can help.

Pure: it reads what the monitor already has, the platform's state (`JobState`, the native state text, the
reason, the exit code) and the last lines of the job's log, and sorts the failure into one of three kinds:

- *infrastructure*: the cluster, not the run (a node that failed, preemption, a node that did not boot, a
  GPU's Xid or ECC error, NCCL or InfiniBand failures, a registry that could not be reached). The same
  inputs may well work on another attempt: these get **Retry**.
- *configuration*: the inputs (spec keys Hydra/OmegaConf refuse, a spec that does not parse, a file missing
  in the container, bad arguments, an image that does not exist, a memory or time limit too small). A retry
  fails the same way; change the input.
- *program*: the run itself raised (a Python traceback with no infrastructure or configuration cause).
  The traceback's last frames are kept.

Some evidence decides whatever else the log says (a node failure, an Xid, an ECC or InfiniBand error);
other infrastructure signs are often only echoes of another rank's crash (NCCL watchdog timeouts, "remote
process exiting prematurely"), so a Python exception in the same tail wins over them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum

from taobot.launches import JobState

MAX_CHAIN = 10  # launches in one retry chain (the first one and its retries)
MAX_LINE = 300  # a deciding line is shown shortened to this
FRAMES_SHOWN = 3


class FailureKind(str, Enum):
    INFRASTRUCTURE = "infrastructure"
    PROGRAM = "program"
    CONFIGURATION = "configuration"
    UNKNOWN = "unknown"  # nothing in the state or the log tail says which


@dataclass(frozen=True)
class Triage:
    kind: FailureKind
    cause: str  # a few words: "node failure", "NCCL network error", "spec error", "Python exception" …
    evidence: str  # the log line, or the platform state, that decided it
    frames: tuple[str, ...] = field(default_factory=tuple)  # program failures: the traceback's last frames

    @property
    def retriable(self) -> bool:
        """Infrastructure failures only: the same inputs may work on another attempt."""
        return self.kind is FailureKind.INFRASTRUCTURE


INFRA, CONFIG, PROGRAM = FailureKind.INFRASTRUCTURE, FailureKind.CONFIGURATION, FailureKind.PROGRAM

# Native states (SLURM's, Kubernetes' Pod reasons) that decide on their own.
STATE_RULES: dict[str, tuple[FailureKind, str]] = {
    "NODE_FAIL": (INFRA, "node failure"),
    "PREEMPTED": (INFRA, "preempted by the scheduler"),
    "BOOT_FAIL": (INFRA, "boot failure"),
    "EVICTED": (INFRA, "evicted from its node"),
    "NODELOST": (INFRA, "node failure"),
    "OUT_OF_MEMORY": (CONFIG, "out of memory"),
    "OOMKILLED": (CONFIG, "out of memory"),
    "TIMEOUT": (CONFIG, "time limit"),
    "DEADLINE": (CONFIG, "time limit"),
    "DEADLINEEXCEEDED": (CONFIG, "time limit"),
}

# Xids that NVIDIA's catalogue sends to the application first (restart the app, check the app or CUDA code):
# on their own they point at the run, not the GPU. 45 follows other errors; the other Xid decides.
APPLICATION_XIDS = frozenset({11, 13, 25, 31, 32, 43, 45, 69, 80})
XID = re.compile(r"\bNVRM: Xid \((?:PCI:)?[0-9A-Fa-f:.]+\): (\d+)")


def _rules(*pairs: tuple[str, str]) -> tuple[tuple[str, re.Pattern], ...]:
    return tuple((cause, re.compile(pattern)) for cause, pattern in pairs)


# Infrastructure whatever else the tail says.
PRIMARY_INFRA = _rules(
    ("node failure", r"DUE TO NODE FAIL|srun: error: Node failure on|Node \S+ (?:not responding|failed)"),
    ("preempted by the scheduler", r"DUE TO PREEMPTION"),
    ("GPU memory (ECC)", r"uncorrectable ECC error|cudaErrorECCUncorrectable|Double Bit ECC|ECC.*uncorrectable"),
    ("GPU fell off the bus", r"fallen off the bus|GPU is lost"),
    (
        "GPU / driver",
        r"CUDA driver version is insufficient|cudaErrorInitializationError|CUDA error: initialization error"
        r"|no CUDA-capable device is detected|Failed to initialize NVML|NVML: Driver/library version mismatch"
        r"|cudaErrorDevicesUnavailable|busy or unavailable",
    ),
    ("InfiniBand", r"NCCL WARN NET/IB|\bibv_\w+.*(?:fail|error)|\bmlx5\w*.*(?:error|fail|down)|RDMA.*(?:error|fail)"),
    ("InfiniBand", r"InfiniBand.*(?:error|fail|down)|link (?:is )?down"),
    ("NCCL system error", r"unhandled system error|ncclSystemError|ncclInternalError|internal error - please report"),
    ("NCCL network error", r"NCCL WARN (?:NET/Socket|Net :|.*Connect to .* failed)"),
    ("storage or mount", r"Stale file handle|Transport endpoint is not connected|\[Errno (?:5|107|116)\]"),
    (
        "image registry unreachable",
        r"(?:pull|registry|/v2/).*(?:TLS handshake timeout|toomanyrequests|i/o timeout|request canceled"
        r"|connection reset|no such host|connection refused|50[234] )",
    ),
)

# Configuration whatever else the tail says (a traceback after these is their consequence).
PRIMARY_CONFIG = _rules(
    (
        "image not found or not allowed",
        r"manifest unknown|manifest for \S+ not found|pull access denied|repository does not exist"
        r"|unauthorized: authentication required|requested access to the resource is denied"
        r"|invalid reference format|not found: manifest",
    ),
    ("out of memory", r"oom_kill event|OOM Killed|oom-kill|Out of memory: Killed process|OOMKilled"),
    ("time limit", r"DUE TO TIME LIMIT"),
)

CONFIGURATION = _rules(
    (
        "GPU out of memory",
        r"CUDA out of memory|torch\.cuda\.OutOfMemoryError|CUDA error: out of memory|cudaErrorMemoryAllocation"
        r"|Cuda failure 'out of memory'",
    ),
    ("spec error", r"\b(?:omegaconf|hydra)\.errors\.\w+"),
    (
        "spec error",
        r"^Error merging '[^']*' with schema|Could not override '|Key '[^']*' (?:not in|is not in struct)"
        r"|Missing mandatory value|Cannot find primary config|Could not find '[^']*'",
    ),
    ("spec unreadable", r"yaml\.\w+\.\w+Error|TOMLDecodeError|TomlDecodeError|while (?:scanning|parsing) a"),
    ("file missing", r"FileNotFoundError|No such file or directory|config file not found|NotADirectoryError"),
    ("file not readable", r"PermissionError|IsADirectoryError"),
    ("entrypoint missing in the container", r"command not found|executable file not found in \$PATH"),
    ("module missing in the container", r"ModuleNotFoundError|ImportError: "),
    (
        "bad arguments",
        r": error: (?:unrecognized arguments|the following arguments are required|argument |invalid choice)",
    ),
    ("spec error", r"^Error executing job with overrides"),
)

# Only echoes of another rank's crash, as often as not: decide only when no Python exception does.
SECONDARY_INFRA = _rules(
    ("NCCL timeout", r"Watchdog caught collective operation timeout|NCCL.*[Tt]imeout|ncclRemoteError"),
    ("NCCL error", r"remote process exiting prematurely|NCCL WARN|NCCL error"),
    ("image pull", r"pyxis: failed to import docker image|ErrImagePull|ImagePullBackOff|failed to pull"),
)

OTHER_PROGRAM = _rules(
    ("crash", r"Segmentation fault|SIGSEGV|core dumped|Aborted \(core dumped\)|double free"),
    ("CUDA fault in the program", r"illegal memory access|device-side assert triggered|misaligned address"),
)

# Exceptions a rank raises when ANOTHER rank (or the network) went away: not the root cause of a crash.
DISTRIBUTED = re.compile(
    r"DistBackendError|DistNetworkError|DistStoreError|ChildFailedError|NCCL error|ProcessGroupNCCL|TCPStore"
    r"|c10d|ncclRemoteError|Connection reset by peer|Broken pipe"
)
NCCL_PROGRAM = re.compile(r"ncclInvalidUsage|ncclInvalidArgument|invalid usage")  # NCCL used wrongly: the code
FRAME = re.compile(r'^\s*File "([^"]+)", line (\d+), in (.+)$')
EXCEPTION = re.compile(
    r"^(?:[A-Za-z_]\w*\.)*(?:[A-Z]\w*(?:Error|Exception|Interrupt|Exit|Failure|Fault|Warning)|[A-Z]\w*(?=:))(?::.*)?$"
)
RANK_PREFIX = re.compile(r"^(?:\[(?:default)?rank\d+\]:|\d+: )\s?")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def clean(line: str) -> str:
    """A log line without colour codes and the rank prefix torchrun or `srun --label` put in front."""
    return RANK_PREFIX.sub("", ANSI.sub("", line.rstrip("\r\n")))


def shorten(text: str, limit: int = MAX_LINE) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class Traceback:
    frames: tuple[str, ...]  # `File "…", line N, in f` lines, each with its code line when the log has it
    exception: str  # the line naming the exception


def tracebacks(lines: Sequence[str]) -> list[Traceback]:
    """The Python tracebacks in a log tail, oldest first; one cut at the top (the tail began mid-way) counts too."""
    found: list[Traceback] = []
    frames: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        match = FRAME.match(line)
        if match:
            frame = line.strip()
            nxt = lines[i + 1] if i + 1 < len(lines) else ""
            if nxt.startswith(" ") and not FRAME.match(nxt) and nxt.strip() and set(nxt.strip()) - set("^~ "):
                frame += "\n    " + nxt.strip()
                i += 1
            frames.append(frame)
        elif line.startswith("Traceback (most recent call last)"):
            frames = []
        elif frames and not line.startswith(" ") and EXCEPTION.match(line.strip()):
            found.append(Traceback(tuple(frames), line.strip()))
            frames = []
        i += 1
    return found


def _last_match(rules, lines: Sequence[str]) -> tuple[str, str] | None:
    """(cause, line) of the first rule that matches any line, the newest such line; rules are in priority order."""
    for cause, pattern in rules:
        for line in reversed(lines):
            if pattern.search(line):
                return cause, line
    return None


def _xid(lines: Sequence[str]) -> tuple[str, str] | None:
    for line in reversed(lines):
        match = XID.search(line)
        if match and int(match.group(1)) not in APPLICATION_XIDS:
            return "GPU / driver", line
    return None


def triage(
    state: JobState,
    native: str | None,
    reason: str | None,
    exit_code: int | None,
    log_tail: Iterable[str] = (),
) -> Triage | None:
    """The triage of a failed launch; None for a launch that did not fail (succeeded, cancelled, unknown)."""
    if state is not JobState.FAILED:
        return None
    native = (native or "").strip()
    word = native.split(" ", 1)[0].rstrip("+").upper()
    if word in STATE_RULES:
        kind, cause = STATE_RULES[word]
        said = f"platform state {native}" + (f" ({reason})" if reason else "")
        return Triage(kind, cause, shorten(said))
    lines = [clean(line) for line in log_tail if line and line.strip()]
    # The reason the backend gave (a Kubernetes waiting reason, TAO's status message …) reads like a log line.
    evidence = lines + ([reason] if reason else [])
    hit = _xid(evidence) or _last_match(PRIMARY_INFRA, evidence)
    if hit:
        return Triage(INFRA, hit[0], shorten(hit[1]))
    hit = _last_match(PRIMARY_CONFIG, evidence)
    if hit:
        return Triage(CONFIG, hit[0], shorten(hit[1]))
    found = tracebacks(lines)
    roots = [tb for tb in found if not DISTRIBUTED.search(tb.exception) or NCCL_PROGRAM.search(tb.exception)]
    if roots:
        # The exception the run died of decides: a missing file, a spec key, a module are the inputs' doing.
        root = roots[-1]
        hit = _last_match(CONFIGURATION, [root.exception])
        if hit:
            return Triage(CONFIG, hit[0], shorten(root.exception))
        return Triage(PROGRAM, "Python exception", shorten(root.exception), _frames(root))
    hit = _last_match(CONFIGURATION, evidence)
    if hit:
        return Triage(CONFIG, hit[0], shorten(hit[1]))
    hit = _last_match(SECONDARY_INFRA, evidence)
    if hit:
        return Triage(INFRA, hit[0], shorten(hit[1]))
    hit = _last_match(OTHER_PROGRAM, evidence)
    if hit:
        return Triage(PROGRAM, hit[0], shorten(hit[1]))
    if reason:
        return Triage(PROGRAM, "failure reported", shorten(reason))
    if exit_code:
        said = next((line for line in reversed(lines) if re.search(r"(?i)error|fail|fatal", line)), None)
        return Triage(PROGRAM, f"exit code {exit_code}", shorten(said or f"exit code {exit_code}"))
    return Triage(FailureKind.UNKNOWN, "no cause found", shorten(f"platform state {native or 'failed'}"))


def _frames(tb: Traceback) -> tuple[str, ...]:
    return tuple(shorten(f, 400) if "\n" not in f else _short_frame(f) for f in tb.frames[-FRAMES_SHOWN:])


def _short_frame(frame: str) -> str:
    head, _, code = frame.partition("\n")
    return shorten(head, 300) + "\n    " + shorten(code, 200)


def stored(kind: str | None, cause: str | None, line: str | None, frames_json: str | None) -> Triage | None:
    """A triage as the launches table keeps it (`failure_*` columns); None when none was stored."""
    if not kind:
        return None
    try:
        frames = tuple(str(f) for f in json.loads(frames_json or "[]"))
    except ValueError:
        frames = ()
    return Triage(FailureKind(kind), cause or "", line or "", frames)


def columns(found: Triage) -> dict[str, str]:
    """The `failure_*` columns of a launch row for this triage."""
    return {
        "failure_kind": found.kind.value,
        "failure_cause": found.cause,
        "failure_line": found.evidence,
        "failure_frames": json.dumps(list(found.frames)),
    }


def auto_retry(found: Triage | None, chain: int, allowed: int) -> tuple[bool, str | None]:
    """Whether an opted-in launch (`retry=infra:N`, `allowed` = N; 0 is off) retries itself now, and what its
    final reply says about it. `chain`: the failed launch's place in its retry chain (1: not a retry)."""
    if not allowed or found is None:
        return False, None
    if not found.retriable:
        return False, f"Automatic retry (`retry=infra:{allowed}`) is for infrastructure failures only: not retried."
    done = chain - 1
    if chain >= MAX_CHAIN:
        return False, f"No automatic retry: this chain has {chain} launches, the most taobot runs ({MAX_CHAIN})."
    if done >= allowed:
        return False, f"Automatic retries used up ({allowed} of {allowed}); press *Retry* to try once more."
    return True, f"Retrying automatically ({done + 1} of {allowed}): preflight first, then a new job, in this thread."


# --------------------------------------------------------------------------- a submit the platform refused

# What a platform says when it refuses to take a job at all (sbatch, the Docker daemon, the Kubernetes API):
# the request is what is wrong, and the same request is refused again.
SUBMIT_CONFIG = _rules(
    ("partition unknown", r"Invalid partition name|invalid partition specified"),
    (
        "account or QOS refused",
        r"Invalid account|account/partition combination|Invalid qos|Job violates accounting/QOS policy",
    ),
    (
        "request above the partition's limits",
        r"Requested node configuration is not available|Requested time limit is invalid"
        r"|Node count specification invalid|More processors requested than permitted"
        r"|Requested partition configuration not available|Requested GRES option unsupported",
    ),
    ("identity not permitted", r"cannot (?:create|get|list|patch|update|delete) resource"),
    ("refused by admission", r"admission webhook .*denied|violates PodSecurity|exceeded quota|is forbidden"),
    ("request invalid", r"is invalid: |Unprocessable Entity"),
    ("GPU runtime missing on the Docker host", r"could not select device driver"),
    ("mount refused", r"invalid mount config|bind source path does not exist"),
)
# The platform's own trouble at submit time: the same request may well be taken on another attempt.
SUBMIT_INFRA = _rules(
    (
        "scheduler unreachable",
        r"Unable to contact slurm controller|Socket timed out|slurm_receive_msg|Zero Bytes were transmitted"
        r"|Slurm temporarily unable|Resource temporarily unavailable|Transport endpoint is not connected",
    ),
    ("image pull", r"could not pull|failed to pull|pull .*(?:error|failed)"),
)

# What a person does about a submit refused for each cause, where the kind alone does not say it.
SUBMIT_HINTS = {
    "image not found or not allowed": "check the image's name and tag (reply `image=<ref>`); for a private "
    "registry, give its login (DOCKER_USERNAME and NGC_KEY) with *Enter credentials*",
    "partition unknown": "set SLURM_PARTITION to one of the partitions `sinfo -s` lists",
    "account or QOS refused": "set SLURM_ACCOUNT (and the QOS) to ones you may use (`sacctmgr show assoc user=$USER`)",
    "request above the partition's limits": "lower the GPUs, nodes, CPUs per task or time, or choose a larger partition",
    "identity not permitted": "the Kubernetes identity may not create the launch's objects in this namespace: "
    "ask the namespace's operator for the launch role, or choose another identity",
    "refused by admission": "the cluster's admission rules refused the Pod: ask its operator what is allowed, "
    "or change the request (GPUs, memory, image) to fit the namespace's quota and policy",
    "GPU runtime missing on the Docker host": "this Docker host has no NVIDIA GPU runtime: choose another "
    "platform, or have the host's operator install the NVIDIA Container Toolkit",
    "image registry unreachable": "the registry did not answer; *Retry* once it is back",
    "image pull": "the image could not be pulled; *Retry* tries again",
    "scheduler unreachable": "the scheduler did not answer; *Retry* tries again",
    "platform unreachable": "the platform did not answer; *Retry* tries again",
}


def submit_triage(message: str, unreachable: bool = False) -> Triage:
    """The triage of a submit that failed before any job existed: the platform's refusal (or, `unreachable`,
    its silence). An image that does not exist or may not be pulled is the request's doing; a registry or
    scheduler that did not answer is the platform's, and worth another attempt."""
    lines = [clean(line) for line in (message or "").splitlines() if line.strip()] or [message or ""]
    for kind, rules in (
        (CONFIG, PRIMARY_CONFIG),
        (CONFIG, SUBMIT_CONFIG),
        (INFRA, PRIMARY_INFRA),
        (INFRA, SUBMIT_INFRA),
    ):
        hit = _last_match(rules, lines)
        if hit:
            return Triage(kind, hit[0], shorten(hit[1]))
    if unreachable:
        return Triage(INFRA, "platform unreachable", shorten(lines[-1]))
    return Triage(FailureKind.UNKNOWN, "refusal not recognised", shorten(lines[-1]))
