"""A train → evaluate → export workflow on a real Docker daemon, from a Slack thread.

The bot runs against the fake Slack and a private dockerd (tests/dockerd.py) that holds the stand-in image
(busybox + tests/images/standin/tao-standin) under dino's default image name, so nothing is pulled. There are no
GPUs here: the daemon is started with a stand-in for the NVIDIA container hook on its PATH (a script that reads
the container's state and exits 0), so Docker accepts the GPU request every launch makes and the rest of the
launch is the real one. The intake names a results location under the policy's mount root: each stage's
/tao/results is `<location>/<launch>`, and a later stage mounts the train stage's checkpoint from there,
read-only. The stand-in prints the sha256 of the checkpoint it is given; the test compares it with the file.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pytest

from taobot.catalog import find_model, resolve_image
from tests.builders import CATALOG
from tests.dockerd import private_dockerd
from tests.harness import BotProcess, SlackUser, Thread, blocks_text
from tests.polling import wait_until
from tests.test_backend_docker import standin_rootfs
from tests.test_policy_slack import preflight_text

DINO = find_model(CATALOG, "dino")
DINO_IMAGE = resolve_image(CATALOG, DINO, DINO.actions["train"]).image
HOOK = (
    "#!/bin/sh\n# stand-in for the NVIDIA container hook: no GPUs here; the container starts as it is\ncat >/dev/null\n"
)


@pytest.fixture(scope="module")
def hooked_daemon(tmp_path_factory):
    """A private dockerd that takes GPU requests (the hook stand-in) and has the stand-in as dino's image."""
    import docker

    bin_dir = tmp_path_factory.mktemp("hook")
    hook = bin_dir / "nvidia-container-runtime-hook"
    hook.write_text(HOOK)
    hook.chmod(0o755)
    saved = os.environ["PATH"]
    os.environ["PATH"] = f"{bin_dir}:{saved}"  # dockerd looks the hook up once, when it starts
    try:
        daemon = private_dockerd({"runtimes": {"nvidia": {"path": "runc"}}}, prefix="tbwf-")
        host = daemon.__enter__()
    finally:
        os.environ["PATH"] = saved
    try:
        client = docker.DockerClient(base_url=host, timeout=30)
        repo, tag = DINO_IMAGE.rsplit(":", 1)
        client.api.import_image_from_data(standin_rootfs(), repository=repo, tag=tag, changes=["ENV PATH=/bin"])
        client.close()
        yield host
    finally:
        daemon.__exit__(None, None, None)


def open_workflow(person: SlackUser, text: str) -> Thread:
    """`/tao <text>` (e.g. `workflow train-eval-export dino`): the thread of its intake card."""
    return person.open_thread(text)


def pipeline_card(thread: Thread) -> str:
    """The thread's pipeline card as it stands now (one message, updated in place)."""
    (card,) = [m for m in thread.replies() if "*Workflow `" in blocks_text(m)]
    return blocks_text(card)


def confirm_images_and_launch(thread: Thread) -> None:
    thread.say("confirm images")
    thread.wait_reply("every stage's image is confirmed")
    thread.press("run_preflight")
    preflight_text(thread, "passed")
    thread.wait_card("Preflight passed.")
    thread.press("launch")


def launch_posts(thread: Thread, launch_id: str) -> int:
    """How many times the bot posted the launch message of `launch_id` (a later final may edit it in place)."""
    return sum(
        c.method == "chat.postMessage" and f"Launched `{launch_id}`" in blocks_text(c.params)
        for c in thread.slack.calls
    )


def read_sha(log: str, key: str = "checkpoint") -> tuple[str, str]:
    """(path, sha256) the stand-in printed for the file it read."""
    found = re.search(rf"read {key} (\S+) sha256=([0-9a-f]{{64}})", log)
    assert found, log
    return found.group(1), found.group(2)


def dino_data(base: Path, **knobs: str) -> Path:
    """A dino dataset root (images/, annotations.json) and a results folder beside it; `knobs` go into a
    standin.env in images/ (the folder a container mounts), which the stand-in reads: `standin_sleep=2`."""
    (base / "train" / "images").mkdir(parents=True)
    (base / "train" / "annotations.json").write_text("[]")
    (base / "train" / "images" / "standin.env").write_text("".join(f"{k}={v}\n" for k, v in knobs.items()))
    (base / "results").mkdir()
    return base


def docker_bot(tmp_path: Path, slack, data: Path, host: str) -> BotProcess:
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"docker:\n  mount_roots: [{data}]\n")
    env = {"TAOBOT_POLICY": str(policy), "DOCKER_HOST": host, "TAOBOT_POLL_SECONDS": "1"}
    return BotProcess(tmp_path, slack, extra_env=env).start()


def dino_workflow(bot: BotProcess, data: Path, evaluate: str = "train") -> Thread:
    """A complete local-docker workflow intake whose results go under `data/results`, preflight passed; its
    evaluation root is `data/<evaluate>`."""
    thread = open_workflow(SlackUser(bot), "workflow train-eval-export dino")
    thread.say("platform=local-docker monitor=yes interval=60")
    thread.wait_card("Use default image")
    thread.press("image_use_default")
    thread.wait_card("(default, confirmed)")
    thread.say(f"train={data}/train eval={data}/{evaluate} results={data}/results num_gpus=1")
    thread.wait_card("status: *complete*")
    confirm_images_and_launch(thread)
    return thread


def stored(bot: BotProcess, intake_id: str):
    store = bot.store()
    try:
        return {r.name: r for r in store.stage_rows(intake_id)}, store.launches_for_intake(intake_id)
    finally:
        store.close()


def containers_of(client, intake_id: str) -> list:
    return client.containers.list(all=True, filters={"label": f"taobot.intake={intake_id}"})


def test_train_evaluate_export_on_docker_later_stages_read_the_train_checkpoint(
    tmp_path, tmp_path_factory, slack, hooked_daemon
):
    import docker

    data = dino_data(tmp_path_factory.mktemp("wfdata"))  # beside the bot's folder: a container may not mount that
    bot = docker_bot(tmp_path, slack, data, hooked_daemon)
    client = docker.DockerClient(base_url=hooked_daemon, timeout=30)
    try:
        thread = dino_workflow(bot, data)
        thread.wait_reply("finished: every stage ended", timeout=80)

        rows, launches = stored(bot, thread.intake_id)
        assert [(n, r.state) for n, r in rows.items()] == [
            ("train", "succeeded"),
            ("evaluate", "succeeded"),
            ("export", "succeeded"),
        ]
        assert len(launches) == 3 and all(ln.state.value == "Succeeded" for ln in launches)
        train = rows["train"]
        # The train stage's results are under the intake's results location, not the bot's work dir.
        assert train.results == str(data / "results" / train.launch_id)
        assert train.checkpoint.startswith(train.results + "/train/") and train.checkpoint.endswith(".pth")
        wrote = hashlib.sha256(Path(train.checkpoint).read_bytes()).hexdigest()
        for stage in ("evaluate", "export"):
            (ct,) = client.containers.list(all=True, filters={"label": f"taobot.launch={rows[stage].launch_id}"})
            assert read_sha(ct.logs().decode()) == (train.checkpoint, wrote), stage
            mounts = {m["Destination"]: m for m in ct.attrs["Mounts"]}
            assert mounts[train.checkpoint]["RW"] is False  # the earlier stage's result: read-only
            assert mounts["/tao/results"]["Source"] == rows[stage].results and mounts["/tao/results"]["RW"] is True
        onnx = Path(rows["export"].results) / "model.onnx"
        assert onnx.read_bytes() == b"stand-in onnx of\n" + Path(train.checkpoint).read_bytes()

        assert [launch_posts(thread, r.launch_id) for r in rows.values()] == [1, 1, 1]
        card = pipeline_card(thread)
        assert "— done" in card
        for (
            name,
            row,
        ) in rows.items():  # each stage's key metric: the stand-in's last validation accuracy, 1 - 1/(2 + 2)
            assert re.search(
                rf"\*{name}\* \({name}\) succeeded · [^·]+ · val_accuracy 0.7500 · `{row.launch_id}`", card
            ), card
        assert "Left out: gen_trt_engine: dino has no `gen_trt_engine` action" in card
    finally:
        client.close()
        bot.kill()


def test_a_bot_killed_while_the_train_stage_runs_starts_each_later_stage_once(
    tmp_path, tmp_path_factory, slack, hooked_daemon
):
    import docker

    data = dino_data(tmp_path_factory.mktemp("wfkill"), standin_sleep="2", standin_epochs="3")
    bot = docker_bot(tmp_path, slack, data, hooked_daemon)
    client = docker.DockerClient(base_url=hooked_daemon, timeout=30)
    try:
        thread = dino_workflow(bot, data)

        def train_running():
            _rows, launches = stored(bot, thread.intake_id)
            return any(ln.action == "train" and ln.state.value == "Running" for ln in launches) or None

        wait_until(train_running, 40, "the train stage running")
        # SIGKILL: the pipeline is only what the store holds (its launch message may not be posted yet: the
        # restarted bot posts it, once).
        bot.kill()
        bot.start()
        thread.wait_reply("finished: every stage ended", timeout=80)

        rows, launches = stored(bot, thread.intake_id)
        assert [(n, r.state) for n, r in rows.items()] == [
            ("train", "succeeded"),
            ("evaluate", "succeeded"),
            ("export", "succeeded"),
        ]
        assert sorted(ln.action for ln in launches) == ["evaluate", "export", "train"]
        made = sorted(ct.labels["taobot.action"] for ct in containers_of(client, thread.intake_id))
        assert made == ["evaluate", "export", "train"]  # one container per stage: nothing started twice
        for row in rows.values():  # and one launch post each, whichever bot process started it
            assert launch_posts(thread, row.launch_id) == 1, row.name
    finally:
        client.close()
        bot.kill()


def test_a_failed_evaluate_stops_the_pipeline_and_resume_reruns_it_and_export_with_the_first_train(
    tmp_path, tmp_path_factory, slack, hooked_daemon
):
    import docker

    data = dino_data(tmp_path_factory.mktemp("wfresume"))
    # The evaluation root's stand-in fails; the train job reads the train root's standin.env (sorted first).
    (data / "val" / "images").mkdir(parents=True)
    (data / "val" / "annotations.json").write_text("[]")
    (data / "val" / "images" / "standin.env").write_text("standin_exit=1\n")
    bot = docker_bot(tmp_path, slack, data, hooked_daemon)
    client = docker.DockerClient(base_url=hooked_daemon, timeout=30)
    try:
        thread = dino_workflow(bot, data, evaluate="val")
        stopped = thread.wait_reply("Workflow stopped at stage `evaluate`", timeout=60)
        assert "ended Failed" in stopped
        assert "Resume from evaluate" in pipeline_card(thread)
        rows, launches = stored(bot, thread.intake_id)
        assert len(launches) == 2 and "export" not in rows  # export never started

        (data / "val" / "images" / "standin.env").write_text("")  # the person fixes the evaluation data
        thread.press_on_reply("workflow_resume", "*Workflow `")
        thread.wait_reply("Resuming from stage `evaluate`")
        thread.press("run_preflight")
        preflight_text(thread, "passed")
        thread.wait_card("Preflight passed.")
        thread.press("launch")
        thread.wait_reply("finished: every stage ended", timeout=60)

        store = bot.store()
        try:
            every = [(r.run, r.name, r.state) for r in store.stage_rows(thread.intake_id)]
            launches = store.launches_for_intake(thread.intake_id)
        finally:
            store.close()
        assert every == [
            (1, "train", "succeeded"),
            (1, "evaluate", "failed"),
            (2, "evaluate", "succeeded"),
            (2, "export", "succeeded"),
        ]
        made = sorted(ct.labels["taobot.action"] for ct in containers_of(client, thread.intake_id))
        assert made == ["evaluate", "evaluate", "export", "train"]  # train ran once, in the first run
        train = rows["train"]
        wrote = hashlib.sha256(Path(train.checkpoint).read_bytes()).hexdigest()
        for launch_id in (f"{thread.intake_id}-r2s1", f"{thread.intake_id}-r2s2"):
            (ct,) = client.containers.list(all=True, filters={"label": f"taobot.launch={launch_id}"})
            assert read_sha(ct.logs().decode()) == (train.checkpoint, wrote), launch_id
        assert "Resume from" not in pipeline_card(thread)
    finally:
        client.close()
        bot.kill()
