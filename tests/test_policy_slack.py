"""The operator's policy in Slack threads: every refusal said in the thread, nothing changed, nothing created.

The real bot (`taobot serve --http`) runs with a policy file against the fake
Slack, its own SQLite database and a private dockerd whose daemon.json
registers a runtime named `nvidia` (backed by runc), so a local-docker
preflight can pass here. Each refusal is checked where it matters: the
thread says what was refused, why and what is allowed; the stored intake is
unchanged; the daemon holds no container; the audit table has the refusal.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from taobot.intake import start_intake
from taobot.launches import JobState
from taobot.slack import blocks as B
from tests.builders import CATALOG, launch_record
from tests.dockerd import private_dockerd
from tests.fakes import ids
from tests.harness import BotProcess, SlackUser, Thread, blocks_text
from tests.polling import wait_until

USER, CHANNEL = ids.USER_ID, ids.CHANNEL_ID
IMAGE = "nvcr.io/nvidia/tao/tao-toolkit:7.1.0-pyt"  # dino's default


# --------------------------------------------------------------------------- daemons, data, the bot


@pytest.fixture(scope="module")
def gpu_daemon():
    """A private dockerd with a runtime named `nvidia`: the local-docker preflight passes on it."""
    with private_dockerd({"runtimes": {"nvidia": {"path": "runc"}}}, prefix="tbpo-") as host:
        yield host


def containers(host: str) -> list:
    import docker

    client = docker.DockerClient(base_url=host, timeout=10)
    try:
        return client.containers.list(all=True)
    finally:
        client.close()


@pytest.fixture
def data(tmp_path_factory) -> Path:
    """`<base>/data` (the policy's mount root) with dino's train and val layout; `<base>/outside` beside it."""
    base = tmp_path_factory.mktemp("policy")
    for split in ("train", "val"):
        (base / "data" / split / "images").mkdir(parents=True)
        (base / "data" / split / "annotations.json").write_text("[]")
    (base / "outside").mkdir()
    (base / "outside" / "annotations.json").write_text("[]")
    (base / "data" / "etc-link").symlink_to("/etc")
    return base


def policy_bot(tmp_path: Path, slack, policy: str, **env: str) -> BotProcess:
    path = tmp_path / "policy.yaml"
    path.write_text(policy)
    return BotProcess(tmp_path, slack, extra_env={"TAOBOT_POLICY": str(path), **env}).start()


def restart_with(bot: BotProcess, policy: str) -> None:
    """The operator changes the policy file and restarts the bot (same database)."""
    bot.kill()
    Path(bot.extra_env["TAOBOT_POLICY"]).write_text(policy)
    bot.start()


def roots(data: Path) -> str:
    return f"docker:\n  mount_roots: [{data}/data]\n"


def dino_on_docker(person: SlackUser, data: Path, gpus: int = 1, **keys: str) -> Thread:
    """A complete local-docker intake for dino: default image, train/val roots (or `keys` as exact spec keys)."""
    thread = person.launch("dino")
    thread.say("platform=local-docker monitor=no")
    thread.wait_card("Use default image")
    thread.press(B.IMAGE_USE_DEFAULT)
    thread.wait_card("(default, confirmed)")
    given = " ".join(f"{k}={v}" for k, v in keys.items()) or f"train={data}/data/train eval={data}/data/val"
    thread.say(f"{given} num_gpus={gpus}")
    thread.wait_card("status: *complete*")
    return thread


def refusals(bot: BotProcess, since: float = 0) -> list[dict]:
    store = bot.store()
    try:
        return [r for r in store.audit_rows(since=since) if not r["allowed"]]
    finally:
        store.close()


def stored(bot: BotProcess, intake_id: str):
    store = bot.store()
    try:
        return store.get_intake(intake_id), store.launches_for_intake(intake_id)
    finally:
        store.close()


def preflight_text(thread: Thread, final: str) -> str:
    def card() -> str | None:
        return next((t for t in (blocks_text(m) for m in thread.replies()) if f"Preflight {final}" in t), None)

    return wait_until(
        card, 60, f"the preflight card ({final})", show=lambda: [blocks_text(m)[:150] for m in thread.replies()]
    )


def no_preflight_card(thread: Thread) -> bool:
    return not any("Preflight for launch" in blocks_text(m) for m in thread.replies())


# --------------------------------------------------------------------------- platforms and images


def test_a_platform_the_policy_keeps_from_a_person_is_refused_at_choice_preflight_and_launch(
    tmp_path, slack, data, gpu_daemon
):
    bot = policy_bot(
        tmp_path, slack, "platforms:\n  slurm: {users: [U0SOMEONE1]}\n" + roots(data), DOCKER_HOST=gpu_daemon
    )
    try:
        person = SlackUser(bot)
        thread = person.launch("dino")
        thread.say("platform=slurm")
        reply = thread.wait_reply("is not open to")
        assert f"SLURM is not open to <@{USER}> in <#{CHANNEL}>" in reply and "<@U0SOMEONE1>" in reply
        assert "Platforms open to you here: `lepton`, `brev`, `local-docker`, `kubernetes`." in reply
        thread.press(B.PLATFORM_SELECT, select="slurm")  # the select on the card is refused the same way
        wait_until(lambda: len([m for m in thread.replies() if "is not open to" in blocks_text(m)]) == 2, 30, "2nd")
        state, _ = stored(bot, thread.intake_id)
        assert state.platform is None and "*Platform:* —" in thread.card_text()
        rows = [r for r in refusals(bot) if r["intake_id"] == thread.intake_id]
        assert len(rows) == 2 and all("SLURM is not open to" in r["reason"] for r in rows)
        done = dino_on_docker(person, data)
        # The operator closes Local Docker to this person and narrows the images; the thread is already complete.
        narrower = (
            "platforms:\n  local-docker: {users: [U0SOMEONE1]}\nimages:\n  allowed_prefixes: [nvcr.io/nvidia/other/]\n"
        )
        restart_with(bot, narrower + roots(data))
        since = time.time()
        done.press(B.RUN_PREFLIGHT)
        reply = done.wait_reply("Preflight did not start")
        assert f"Local Docker is not open to <@{USER}>" in reply
        assert f"image `{IMAGE}` is not allowed here" in reply and "`nvcr.io/nvidia/other/`" in reply
        done.say("launch")
        reply = done.wait_reply("Not launching: the launch gate is closed")
        assert "1. platform chosen: Local Docker is not open to" in reply
        assert f"4. image confirmed or overridden: `{IMAGE}` is outside the allowed prefixes" in reply
        state, launches = stored(bot, done.intake_id)
        assert state.preflight is None and launches == [] and no_preflight_card(done)
        assert {r["action"] for r in refusals(bot, since)} >= {"preflight", "launch"}
        assert containers(gpu_daemon) == []
    finally:
        bot.kill()


def test_an_image_override_outside_the_allowed_prefixes_is_refused_naming_them(tmp_path, slack, data):
    bot = policy_bot(tmp_path, slack, "images:\n  allowed_prefixes: [nvcr.io/nvidia/tao/]\n")
    try:
        thread = SlackUser(bot).launch("dino")
        thread.say("platform=local-docker monitor=no")
        thread.wait_card("Use default image")
        thread.say("image=docker.io/library/busybox:1.36")
        reply = thread.wait_reply("is not allowed here")
        assert "`docker.io/library/busybox:1.36`" in reply and "`nvcr.io/nvidia/tao/`" in reply
        view = thread.open_modal(B.IMAGE_OVERRIDE)
        resp = thread.submit(view, {"image_ref": "docker.io/library/busybox:1.36"})
        assert resp.json()["response_action"] == "errors"
        assert "`nvcr.io/nvidia/tao/`" in resp.json()["errors"]["image_ref"]
        state, _ = stored(bot, thread.intake_id)
        assert state.image.chosen is None and "not confirmed yet" in thread.card_text()
        rows = [r for r in refusals(bot) if r["intake_id"] == thread.intake_id]
        assert len(rows) == 2 and all("busybox" in r["reason"] for r in rows)
        thread.say("image=nvcr.io/nvidia/tao/tao-toolkit:6.0.0-pyt")  # inside the prefix: taken
        thread.wait_card("`nvcr.io/nvidia/tao/tao-toolkit:6.0.0-pyt` (override)")
    finally:
        bot.kill()


# --------------------------------------------------------------------------- local-docker host paths


def test_host_paths_outside_the_mount_roots_fail_preflight_on_the_real_daemon(tmp_path, slack, data, gpu_daemon):
    bot = policy_bot(tmp_path, slack, roots(data), DOCKER_HOST=gpu_daemon)
    try:
        keys = {
            "dataset.train_data_sources[0].image_dir": f"{data}/data/train/images",
            "dataset.train_data_sources[0].json_file": f"{data}/data/../outside/annotations.json",
            "dataset.val_data_sources[0].image_dir": f"{data}/data/etc-link",
            "dataset.val_data_sources[0].json_file": "/var/run/docker.sock",
            "model.pretrained_backbone_path": f"file://{tmp_path}/taobot.db",
        }
        thread = dino_on_docker(SlackUser(bot), data, **keys)
        since = time.time()
        thread.press(B.RUN_PREFLIGHT)
        text = preflight_text(thread, "failed")
        assert "Docker daemon" in text and "runtime `nvidia` is registered" in text
        assert f"resolves to `{data}/outside/annotations.json`" in text and "is outside the folders" in text
        assert "resolves to `/etc`" in text and "the host's configuration" in text
        assert "is the Docker socket" in text and "the bot's data folder (TAOBOT_DB)" in text
        assert f"Put the data under `{data}/data`" in text
        card = thread.wait_card("6. datasets mapped and verified")
        for key in list(keys)[1:]:
            assert key in card.split("6. datasets mapped and verified", 1)[1]
        reasons = [r["reason"] for r in refusals(bot, since)]
        assert len(reasons) == 4, reasons
        assert containers(gpu_daemon) == []
    finally:
        bot.kill()


def test_a_folder_swapped_for_a_symlink_after_preflight_is_refused_at_launch(tmp_path, slack, data, gpu_daemon):
    bot = policy_bot(tmp_path, slack, roots(data), DOCKER_HOST=gpu_daemon)
    try:
        thread = dino_on_docker(SlackUser(bot), data)
        thread.press(B.RUN_PREFLIGHT)
        preflight_text(thread, "passed")
        thread.wait_card("Preflight passed.")
        images = data / "data" / "train" / "images"
        shutil.rmtree(images)
        images.symlink_to("/etc")  # same path, same inputs: only resolving it again shows where it leads now
        since = time.time()
        thread.press(B.LAUNCH)
        reply = thread.wait_reply("Not launching: the operator's policy refuses a host path")
        assert f"`{images}` (resolves to `/etc`)" in reply and "Nothing was created" in reply
        _, launches = stored(bot, thread.intake_id)
        assert launches == [] and containers(gpu_daemon) == []
        assert [r["action"] for r in refusals(bot, since)] == ["launch"]
    finally:
        bot.kill()


def own_address() -> str:
    """This machine's non-loopback IPv4 address: a daemon reached there is, to taobot, on another machine."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))  # no packet is sent for a UDP connect
        address = s.getsockname()[0]
    if address.startswith("127."):
        pytest.fail("this machine has no non-loopback IPv4 address to play the remote daemon on")
    return address


@contextmanager
def tcp_to_unix(sock: str, address: str):
    """tcp://address:port forwarded to a unix socket: the private daemon, reachable as a "remote" one."""
    server = socket.create_server((address, 0))
    port = server.getsockname()[1]

    def pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def serve() -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(sock)
            threading.Thread(target=pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=pump, args=(upstream, client), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"tcp://{address}:{port}"
    finally:
        server.close()


def test_a_remote_daemon_keeps_the_gate_shut_even_when_it_answers(tmp_path, slack, data, gpu_daemon):
    with tcp_to_unix(gpu_daemon.removeprefix("unix://"), own_address()) as remote:
        bot = policy_bot(tmp_path, slack, roots(data), DOCKER_HOST=remote)
        try:
            thread = dino_on_docker(SlackUser(bot), data)
            since = time.time()
            thread.press(B.RUN_PREFLIGHT)
            text = preflight_text(thread, "failed")
            assert f"`{remote}` (DOCKER_HOST in the bot's environment) answers" in text
            assert "runtime `nvidia` is registered" in text  # the daemon is fine; its files are what is unknown
            assert text.count(f"cannot be verified: DOCKER_HOST `{remote}` is a remote daemon") == 4
            thread.wait_card("6. datasets mapped and verified: not verified from the platform")
            assert len(refusals(bot, since)) == 4
            assert containers(gpu_daemon) == []
        finally:
            bot.kill()


# --------------------------------------------------------------------------- GPUs, and how long a preflight counts


def test_gpu_limits_per_launch_and_per_person(tmp_path, slack, data, gpu_daemon):
    policy = "gpus:\n  max_per_launch: 4\n  max_per_person: 6\n" + roots(data)
    bot = policy_bot(tmp_path, slack, policy, DOCKER_HOST=gpu_daemon)
    try:
        person = SlackUser(bot)
        thread = person.launch("dino")
        thread.say("platform=local-docker monitor=no")
        thread.wait_card("Use default image")
        thread.say("num_gpus=8")
        reply = thread.wait_reply("would make 8 GPUs in one launch")
        assert "the policy allows at most 4" in reply
        state, _ = stored(bot, thread.intake_id)
        assert "num_gpus" not in state.compute
        # Another launch of this person holds 4 GPUs and is running.
        store = bot.store()
        try:
            other = start_intake(CATALOG, "dino", "train", USER, CHANNEL, "1700000000.000900")
            other.platform, other.compute, other.status = "local-docker", {"num_gpus": 4, "num_nodes": 1}, "launched"
            store.save_intake(other, USER, "start")
            running = launch_record(
                id=f"{other.id}-00001", intake_id=other.id, owner=USER, platform="local-docker", monitor=False
            )
            store.add_launch(running.with_changes(state=JobState.RUNNING), other, USER)
        finally:
            store.close()
        done = dino_on_docker(person, data, gpus=4)
        card = done.card_text()
        assert "7. compute shape known: 4 GPUs with the 4 of your active launches is 8" in card
        done.press(B.RUN_PREFLIGHT)
        reply = done.wait_reply("Preflight did not start")
        assert "over the policy's limit of 6 per person" in reply
        state, _ = stored(bot, done.intake_id)
        assert state.preflight is None and no_preflight_card(done)
        reasons = [r["reason"] for r in refusals(bot)]
        assert any("would make 8 GPUs" in r for r in reasons) and any("6 per person" in r for r in reasons)
    finally:
        bot.kill()


def test_a_preflight_older_than_its_validity_no_longer_opens_the_gate(tmp_path, slack, data, gpu_daemon):
    bot = policy_bot(tmp_path, slack, roots(data), DOCKER_HOST=gpu_daemon)
    try:
        thread = dino_on_docker(SlackUser(bot), data)
        thread.press(B.RUN_PREFLIGHT)
        preflight_text(thread, "passed")
        thread.wait_card("Preflight passed.")
        store = bot.store()
        try:  # the preflight finished 61 minutes ago (TAOBOT_PREFLIGHT_VALID_MINUTES is 60)
            state = store.get_intake(thread.intake_id)
            state.preflight.finished_at = state.preflight.started_at = time.time() - 61 * 60
            store.save_intake(state, "test", "backdated")
        finally:
            store.close()
        thread.press(B.LAUNCH)
        reply = thread.wait_reply("Not launching: the launch gate is closed")
        assert "5. platform access check passed: the preflight result expired (it ran 61 min ago" in reply
        assert "results count for 60 min); run it again" in reply
        _, launches = stored(bot, thread.intake_id)
        assert launches == [] and containers(gpu_daemon) == []
    finally:
        bot.kill()


def test_the_validity_of_a_preflight_is_a_setting(monkeypatch):
    from taobot.config import load_settings
    from taobot.errors import ConfigError

    monkeypatch.delenv("TAOBOT_PREFLIGHT_VALID_MINUTES", raising=False)
    assert load_settings().preflight_valid_minutes == 60
    monkeypatch.setenv("TAOBOT_PREFLIGHT_VALID_MINUTES", "15")
    assert load_settings().preflight_valid_minutes == 15
    monkeypatch.setenv("TAOBOT_PREFLIGHT_VALID_MINUTES", "0")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert err.value.setting == "TAOBOT_PREFLIGHT_VALID_MINUTES"
