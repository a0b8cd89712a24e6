"""Preflight and the launch gate in a Slack thread, against the real SSH + SLURM login node."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from taobot.intake.intents import OPEN_SETTINGS
from taobot.slack import blocks as B
from tests.harness import BotProcess, SlackUser, Thread, blocks_text
from tests.lab import services
from tests.polling import wait_until

pytestmark = pytest.mark.slurm  # the shared test cluster: see tests/conftest.py

LAB = services()
HF = "hf_PreflightSecretValue0123456789abcdefXYZ"
ROOT = LAB["TAOBOT_TEST_TRAIN_DIR"]


@pytest.fixture
def ssh_bot(tmp_path, slack):
    bot = BotProcess(
        tmp_path,
        slack,
        extra_env={
            "TAOBOT_SSH_KNOWN_HOSTS": LAB["TAOBOT_TEST_SSH_KNOWN_HOSTS"],
            "TAOBOT_SSH_CONFIG": str(tmp_path / "no-ssh-config"),
            "TAOBOT_SSH_KEY_ROOT": str(tmp_path / "keys"),  # from Slack, key files only in the person's folder
        },
    ).start()
    yield bot
    bot.kill()


def key_in_folder(person: SlackUser, key: str) -> str:
    """A copy of `key` in the person's own key folder (TAOBOT_SSH_KEY_ROOT/<user id>/), where Slack accepts it."""
    folder = Path(person.bot.extra_env["TAOBOT_SSH_KEY_ROOT"]) / person.user
    folder.mkdir(parents=True, exist_ok=True)
    copy = folder / "id_ed25519"
    shutil.copy(key, copy)
    copy.chmod(0o600)
    return str(copy)


def slurm_intake(person: SlackUser, eval_annotation: str | None = None, key: str | None = None) -> Thread:
    thread = person.launch("cosmos-rl")
    thread.say("platform=slurm monitor=yes interval=1")
    thread.wait_card("*Monitoring:* in this thread, every 1 min")
    view = thread.open_modal(B.OPEN_CREDENTIALS)
    thread.submit(
        view,
        {
            "cred_SLURM_USER": LAB["TAOBOT_TEST_SSH_USER"],
            "cred_SLURM_HOSTNAME": f"127.0.0.1:{LAB['TAOBOT_TEST_SSH_PORT']}",
            "cred_SLURM_PARTITION": LAB["TAOBOT_TEST_SLURM_PARTITION"],
            "cred_SSH_KEY_PATH": key_in_folder(person, key or LAB["TAOBOT_TEST_SSH_KEY"]),
            "cred_HF_TOKEN": HF,
        },
    )
    thread.wait_card("`HF_TOKEN` set")
    # The test node has 8 CPUs: the platform default of 16 per task could never start there, and preflight says so.
    settings = {"cred_SLURM_CPUS_PER_TASK": "1", "cred_SLURM_TIME_HOURS": "", "cred_SLURM_TIMEOUT_HOURS": ""}
    thread.submit(thread.open_modal(OPEN_SETTINGS), settings)
    thread.wait_reply("SLURM_CPUS_PER_TASK is set.")
    thread.press(B.IMAGE_USE_DEFAULT)
    thread.wait_card("(default, confirmed)")
    reply = f"train={ROOT} eval={ROOT}"
    if eval_annotation:
        reply += f" custom.val_dataset.annotation_path={eval_annotation}"
    thread.say(reply + " num_gpus=2 num_nodes=1")
    thread.wait_card("status: *complete*")
    return thread


def preflight_message(thread: Thread, final: str, timeout: float = 30) -> str:
    def card() -> str | None:
        return next((t for t in (blocks_text(m) for m in thread.replies()) if f"Preflight {final}" in t), None)

    return wait_until(
        card,
        timeout,
        f"the final preflight card ({final})",
        show=lambda: [blocks_text(m)[:120] for m in thread.replies()],
        every=0.1,
    )


def remote_ls(path: str) -> str:
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
            f"ls -A {path} 2>/dev/null; squeue -h -u $USER | wc -l",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return out.stdout


def test_preflight_passes_opens_the_gate_and_shows_launch(ssh_bot, slack):
    thread = slurm_intake(SlackUser(ssh_bot))
    assert "Run preflight" in thread.card_text() and "Launch" not in thread.card_text().split("Run preflight")[0][-20:]
    thread.press(B.RUN_PREFLIGHT)
    text = preflight_message(thread, "passed")
    for line in ("SSH login", "key-only login", "exists on the login node", "all have `video_fps`", "Partition gpu"):
        assert line in text
    progress = [c for c in slack.calls_for("chat.update") if "checking" in blocks_text(c.params)]
    assert progress, "the preflight card never showed progress"
    card = thread.wait_card("Preflight passed.")
    assert "Launch" in card
    # any input change closes the gate again
    thread.say("num_gpus=1")
    card = thread.wait_card("inputs changed since the last preflight")
    assert "Run preflight" in card
    thread.press_on_reply(B.LAUNCH)
    reply = thread.wait_reply("Not launching: the launch gate is closed")
    assert "Nothing was created" in reply


def test_failing_preflight_reports_each_problem_with_remediation_and_creates_nothing(ssh_bot, slack):
    before = remote_ls("~")
    thread = slurm_intake(SlackUser(ssh_bot), eval_annotation=LAB["TAOBOT_TEST_ANNOTATIONS_NOFPS"])
    thread.say(f"custom.train_dataset.media_path={LAB['TAOBOT_TEST_LUSTRE_ROOT']}/missing-media")
    thread.wait_card("missing-media")
    thread.press(B.RUN_PREFLIGHT)
    text = preflight_message(thread, "failed")
    assert "`video_fps` missing in" in text and "regenerate the annotations" in text
    assert "missing-media` does not exist on the login node" in text
    # Only dataset checks failed: the gate says the platform check passed, and names the inputs that did not.
    card = thread.wait_card("Preflight has not passed")
    assert "platform access check" not in card and "no platform check ran" not in card
    assert "6. datasets mapped and verified: not verified from the platform:" in card
    assert "custom.train_dataset.media_path" in card and "custom.val_dataset.annotation_path" in card
    assert "Run preflight again" in text
    assert "Launch" not in [
        el.get("text", {}).get("text")
        for m in thread.replies()
        for b in m.get("blocks", [])
        for el in b.get("elements", [])
        if b.get("type") == "actions"
    ]
    assert remote_ls("~") == before  # no folder, no state file, no job on the cluster
    files = sorted(p.name for p in ssh_bot.workdir.iterdir())
    assert set(files) <= {"taobot.db", "taobot.db-wal", "taobot.db-shm", "taobot.db.key", "bot.log", "keys"}, files
    # fix the inputs in the thread, run again: it passes
    thread.say(
        f"custom.val_dataset.annotation_path={LAB['TAOBOT_TEST_ANNOTATIONS']} custom.train_dataset.media_path={ROOT}"
    )
    thread.wait_card("Run preflight")
    thread.press_on_reply(B.RUN_PREFLIGHT)
    preflight_message(thread, "passed")
    thread.wait_card("Preflight passed.")
    assert HF not in json.dumps([c.params for c in slack.calls]) and HF not in ssh_bot.log_text()


def test_wrong_key_preflight_asks_for_ssh_key_path_with_the_five_steps(ssh_bot):
    person = SlackUser(ssh_bot)
    thread = slurm_intake(person, key=LAB["TAOBOT_TEST_SSH_WRONG_KEY"])
    thread.press(B.RUN_PREFLIGHT)
    text = preflight_message(thread, "failed")
    # From Slack the key file lives in the person's own folder: the steps make it there.
    key = str(Path(ssh_bot.extra_env["TAOBOT_SSH_KEY_ROOT"]).resolve() / person.user / "id_ed25519")
    assert "refused the key" in text and f"SSH_KEY_PATH={key}" in text
    user, port = LAB["TAOBOT_TEST_SSH_USER"], LAB["TAOBOT_TEST_SSH_PORT"]
    for step in (
        f'> 1. `ssh-keygen -t ed25519 -N "" -f {key}`',
        f"> 2. `ssh-copy-id -i {key}.pub -p {port} {user}@127.0.0.1`",
        f"> 3. `ssh-keyscan -H -p {port} 127.0.0.1 >> ~/.ssh/known_hosts`",
        f"> 4. `chmod 600 {key}`",
        f"> 5. `ssh -o BatchMode=yes -i {key} -p {port} {user}@127.0.0.1 'hostname'`",
    ):
        assert step in text, step
    assert "<login-host>" not in text and "/path/to" not in text
    assert "exists on the login node" not in text


def test_preflight_before_the_intake_is_complete_lists_what_is_missing(person):
    thread = person.launch("dino")
    thread.say("preflight")
    reply = thread.wait_reply("Preflight runs once the intake is complete")
    assert "Execution platform" in reply


def test_mount_confirmation_is_recorded_with_who_and_when(person):
    thread = person.launch("dino")
    thread.say("platform=kubernetes train=/mnt/shared/coco/train eval=/mnt/shared/coco/val")
    thread.wait_card("/mnt/shared/coco/val/annotations.json")
    thread.say("confirm mounted")
    card = thread.wait_card("Confirmed mounted")
    assert f"by <@{person.user}>" in card and "UTC" in card


def test_restart_during_preflight_marks_it_interrupted_not_running(ssh_bot, slack):
    thread = slurm_intake(SlackUser(ssh_bot))
    with __import__("sqlite3").connect(ssh_bot.db) as db:
        row = json.loads(db.execute("SELECT state FROM intakes WHERE id = ?", [thread.intake_id]).fetchone()[0])
    ssh_bot.kill()
    row["preflight"] = {
        "status": "running",
        "fingerprint": "x",
        "results": [],
        "by": "U",
        "started_at": time.time(),
        "card_ts": None,
    }
    with __import__("sqlite3").connect(ssh_bot.db) as db:
        db.execute("UPDATE intakes SET state = ? WHERE id = ?", [json.dumps(row), thread.intake_id])
    ssh_bot.proc = None
    ssh_bot.start()
    card = thread.wait_card("Preflight has not passed")
    assert "Run preflight" in card


def _buttons(message: dict) -> list[str]:
    return [el["action_id"] for b in message.get("blocks", []) if b.get("type") == "actions" for el in b["elements"]]


def test_a_newer_preflight_takes_the_buttons_off_the_earlier_card(ssh_bot, slack):
    thread = slurm_intake(SlackUser(ssh_bot))
    channel = thread.person.channel
    thread.press(B.RUN_PREFLIGHT)
    preflight_message(thread, "passed")
    first = next(m for m in thread.replies() if "Preflight passed" in blocks_text(m))
    assert B.LAUNCH in _buttons(first)
    thread.press_on_reply(B.RUN_PREFLIGHT, "Preflight passed")
    # the earlier card is redrawn: superseded, its results kept, no button left to press
    old = wait_until(
        lambda: (lambda m: m if "Superseded" in blocks_text(m) else None)(slack.message(channel, first["ts"])),
        30,
        "the earlier preflight card to say it was superseded",
    )
    assert _buttons(old) == [] and "SSH login" in blocks_text(old) and "Launch" not in blocks_text(old)
    # the newer card carries the only Launch button
    newer = wait_until(
        lambda: next(
            (m for m in thread.replies() if m["ts"] != first["ts"] and "Preflight passed" in blocks_text(m)), None
        ),
        30,
        "the newer preflight card to pass",
    )
    assert B.LAUNCH in _buttons(newer)
    assert [m["ts"] for m in thread.replies() if B.LAUNCH in _buttons(m)] == [newer["ts"]]


BREV_TOKEN = "bak-Synthetic-Preflight-T0ken-77aa88bb"


def test_brev_gate_opens_only_for_an_instance_a_launch_can_copy(tmp_path, slack):
    from tests.fakes.brev_api import FakeBrevAPI

    instances = [
        {"name": "tao-a100", "status": "RUNNING", "instanceType": "a2-highgpu-1g"},
        {"name": "tao-l4", "status": "STOPPED", "instanceType": "g2-standard-4"},
    ]
    with FakeBrevAPI(BREV_TOKEN, instances=instances) as brev:
        bot = BotProcess(tmp_path, slack, extra_env={"BREV_API_URL": brev.url}).start()
        try:
            thread = SlackUser(bot).launch("dino")
            thread.say("platform=brev monitor=no train=/mnt/shared/coco/train eval=/mnt/shared/coco/val")
            thread.wait_card("Enter credentials")
            view = thread.open_modal(B.OPEN_CREDENTIALS)
            required = [b["block_id"] for b in view["blocks"] if b.get("type") == "input" and not b["optional"]]
            assert required == ["cred_BREV_API_TOKEN", "cred_BREV_INSTANCE"]  # the launch cannot run without it
            thread.submit(view, {"cred_BREV_API_TOKEN": BREV_TOKEN, "cred_BREV_INSTANCE": "tao-l4"})
            thread.wait_card("`BREV_INSTANCE` set")
            thread.press(B.IMAGE_USE_DEFAULT)
            thread.wait_card("Compute shape")
            thread.press(B.COMPUTE_DEFAULTS)
            thread.say("confirm mounted")
            thread.wait_card("Confirmed mounted")
            thread.wait_card("status: *complete*")
            thread.press(B.RUN_PREFLIGHT)
            text = preflight_message(thread, "failed")
            assert "`tao-l4` is STOPPED, not RUNNING" in text and "brev start tao-l4" in text
            card = thread.wait_card("Preflight has not passed")
            assert "5. platform access check passed: failed: Brev instance" in card
            assert not [m for m in thread.replies() if B.LAUNCH in _buttons(m)]
            # name a running one: the gate opens, and the launch it allows runs
            view = thread.open_modal(B.OPEN_CREDENTIALS)
            thread.submit(view, {"cred_BREV_INSTANCE": "tao-a100"})
            thread.wait_card("inputs changed since the last preflight")
            thread.press(B.RUN_PREFLIGHT)
            thread.wait_card("Preflight passed.")
            thread.press(B.LAUNCH)
            thread.wait_reply("Launched `")
            (created,) = [i for i in brev.list_instances() if i["name"] not in ("tao-a100", "tao-l4")]
            assert created["instanceType"] == "a2-highgpu-1g"
        finally:
            bot.kill()
