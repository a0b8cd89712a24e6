"""Drive SLURM launches from Slack threads: scenarios on the login node, the bot, the thread's status posts."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from taobot.intake.intents import OPEN_SETTINGS
from taobot.slack import blocks as B
from tests.harness import BotProcess, SlackUser, Thread, blocks_text
from tests.lab import services
from tests.polling import wait_until

LAB = services()
GOOD_ANN = LAB["TAOBOT_TEST_ANNOTATIONS"]
HF_SECRET = "hf_LaunchTestSecret0123456789abcdefABCDEF"


def ssh(command: str) -> str:
    out = subprocess.run(
        [
            "ssh",
            "-o",
            "BatchMode=yes",
            "-o",
            f"UserKnownHostsFile={LAB['TAOBOT_TEST_SSH_KNOWN_HOSTS']}",
            "-i",
            LAB["TAOBOT_TEST_SSH_KEY"],
            "-p",
            LAB["TAOBOT_TEST_SSH_PORT"],
            f"{LAB['TAOBOT_TEST_SSH_USER']}@127.0.0.1",
            command,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def scenario(name: str, **env: str) -> str:
    """A dataset root on the login node whose stand-in behaves as `env` says."""
    root = f"{LAB['TAOBOT_TEST_LUSTRE_ROOT']}/cases/{name}-{uuid.uuid4().hex[:6]}"
    lines = "".join(f"{k}={v}\n" for k, v in env.items())
    ssh(
        f"mkdir -p {shlex.quote(root)}/media && cp {shlex.quote(GOOD_ANN)} {shlex.quote(root)}/annotations.json && "
        f"printf %s {shlex.quote(lines)} > {shlex.quote(root)}/standin.env"
    )
    return root


def cancel_taobot_jobs() -> None:
    # Only taobot's own jobs (named tao-*): a benchmark sharing the test user keeps its own.
    ssh(
        "squeue -h -u $USER -o '%i %j' | awk '$2 ~ /^tao-/ {print $1}' | xargs -r scancel; "
        "for i in $(seq 1 50); do [ -z \"$(squeue -h -u $USER -o '%j' | grep '^tao-')\" ] && break; sleep 0.2; done"
    )


# Seconds per status-interval minute in the bot these tests start (TAOBOT_INTERVAL_MINUTE_SECONDS): an
# `interval=1` launch posts slot 1 after this many seconds, so the flows keep their real shape (slots, catch-up
# after a restart, detach) in a sixth of the time. A test module may set its own `INTERVAL_MINUTE_SECONDS`.
MINUTE_S = 10.0


def minute_seconds(request) -> float:
    return float(getattr(request.module, "INTERVAL_MINUTE_SECONDS", MINUTE_S))


@pytest.fixture
def slurm_bot(tmp_path, slack, request):
    cancel_taobot_jobs()  # none of this user's jobs left from an earlier test: queue positions are what it arranges
    bot = BotProcess(
        tmp_path,
        slack,
        extra_env={
            "TAOBOT_SSH_KNOWN_HOSTS": LAB["TAOBOT_TEST_SSH_KNOWN_HOSTS"],
            "TAOBOT_SSH_CONFIG": str(tmp_path / "no-ssh-config"),
            # Each person's key file in their own folder, where Slack accepts one (see `lab_key_for`).
            "TAOBOT_SSH_KEY_ROOT": str(tmp_path / "keys"),
            "TAOBOT_SLURM_CONTAINER": "none",
            "TAOBOT_POLL_SECONDS": "2",
            "TAOBOT_INTERVAL_MINUTE_SECONDS": str(minute_seconds(request)),
        },
    ).start()
    yield bot
    bot.kill()
    cancel_taobot_jobs()


def launch(person: SlackUser, root: str, **options) -> tuple[Thread, str]:
    """A complete intake (see `complete_intake` for the options), preflight passed, launched: (thread, launch id)."""
    thread = complete_intake(person, root, **options)
    thread.press(B.RUN_PREFLIGHT)
    thread.wait_card("Preflight passed.", timeout=30)
    return thread, press_launch(thread)


def press_launch(thread: Thread) -> str:
    thread.press(B.LAUNCH)
    text = thread.wait_reply("Launched `", timeout=30)
    return text.split("Launched `", 1)[1].split("`", 1)[0]


def complete_intake(
    person: SlackUser,
    root: str,
    cpus: int = 1,
    time_hours: str | None = None,
    timeout_hours: str | None = None,
    monitor: str = "monitor=yes interval=1",
    hostname: str | None = None,
    partition: str | None = None,
) -> Thread:
    thread = person.launch("cosmos-rl")
    thread.say(f"platform=slurm {monitor}")
    thread.wait_card("*Platform:* SLURM")
    view = thread.open_modal(B.OPEN_CREDENTIALS)
    values = {
        "cred_SSH_KEY_PATH": lab_key_for(person),
        "cred_SLURM_USER": LAB["TAOBOT_TEST_SSH_USER"],
        "cred_SLURM_HOSTNAME": hostname or f"127.0.0.1:{LAB['TAOBOT_TEST_SSH_PORT']}",
        "cred_SLURM_PARTITION": partition or LAB["TAOBOT_TEST_SLURM_PARTITION"],
        "cred_HF_TOKEN": HF_SECRET,
    }
    thread.submit(view, values)
    thread.wait_card("`HF_TOKEN` set")
    # The run's limits are optional settings: never asked for, given through *More settings*.
    settings = {
        "cred_SLURM_CPUS_PER_TASK": str(cpus),
        "cred_SLURM_TIME_HOURS": time_hours or "",
        "cred_SLURM_TIMEOUT_HOURS": timeout_hours or "",
    }
    thread.submit(thread.open_modal(OPEN_SETTINGS), settings)
    thread.wait_reply("SLURM_CPUS_PER_TASK is set.")  # this submission's answer, not a value saved earlier
    thread.press(B.IMAGE_USE_DEFAULT)
    thread.wait_card("(default, confirmed)")
    thread.say(f"train={root} eval={root} num_gpus=1 num_nodes=1")
    thread.wait_card("status: *complete*")
    return thread


def give_slurm_login(thread: Thread, hf_token: str | None = None, cpus: int = 1) -> None:
    """The SLURM form filled in as a person does (the lab's login node; their key from their own folder), the
    model's token too when given, and the job's CPUs per task (a setting the node's size needs)."""
    values = {
        "cred_SSH_KEY_PATH": lab_key_for(thread.person),
        "cred_SLURM_USER": LAB["TAOBOT_TEST_SSH_USER"],
        "cred_SLURM_HOSTNAME": f"127.0.0.1:{LAB['TAOBOT_TEST_SSH_PORT']}",
        "cred_SLURM_PARTITION": LAB["TAOBOT_TEST_SLURM_PARTITION"],
    }
    if hf_token:
        values["cred_HF_TOKEN"] = hf_token
    thread.submit(thread.open_modal(B.OPEN_CREDENTIALS), values)
    thread.wait_card("`HF_TOKEN` set" if hf_token else "`SLURM_PARTITION` set")
    thread.submit(thread.open_modal(OPEN_SETTINGS), {"cred_SLURM_CPUS_PER_TASK": str(cpus)})
    thread.wait_reply("SLURM_CPUS_PER_TASK is set.")


def lab_key_for(person: SlackUser) -> str:
    """The lab's login key, copied into this person's own key folder (TAOBOT_SSH_KEY_ROOT/<user id>/, 0600):
    from Slack a key file is accepted only there."""
    folder = Path(person.bot.extra_env["TAOBOT_SSH_KEY_ROOT"]) / person.user
    key = folder / "id_ed25519"
    if not key.exists():
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(LAB["TAOBOT_TEST_SSH_KEY"], key)
        key.chmod(0o600)
    return str(key)


def status_posts(thread: Thread, launch_id: str) -> dict[int, list[dict]]:
    """slot -> thread messages carrying that slot's metadata (should be exactly one each)."""
    out: dict[int, list[dict]] = {}
    for m in thread.slack.messages_in_thread(thread.person.channel, thread.thread_ts):
        payload = (m.get("metadata") or {}).get("event_payload") or {}
        if payload.get("launch") == launch_id:
            out.setdefault(payload["slot"], []).append(m)
    return out


def wait_final(thread: Thread, launch_id: str, timeout: float) -> str:
    def final() -> str | None:
        posts = status_posts(thread, launch_id)
        return blocks_text(posts[-1][0]) if -1 in posts else None

    def seen() -> dict:
        return {k: [blocks_text(m)[:80] for m in v] for k, v in status_posts(thread, launch_id).items()}

    return wait_until(final, timeout, f"the final reply of {launch_id}", show=seen, every=1)
