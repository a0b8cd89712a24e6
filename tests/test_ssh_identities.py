"""Each Slack person logs in to SLURM with their own key, never with the bot host's: against the real sshd.

The bot runs as `taobot serve --http` against the fake Slack; the login node
is the test sshd on 127.0.0.1, whose VERBOSE log names every public key
offered to it (`Accepted publickey` / `Failed publickey ... SHA256:...`), so
"no login was tried with that key" is read from the server itself.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from taobot.intake.intents import OPEN_SETTINGS, TRUST_HOST_KEY, USE_TAOBOT_KEY
from taobot.slack import blocks as B
from tests.fakes import ids, post_view_submission
from tests.harness import SIGNING_SECRET, BotProcess, SlackUser, Thread, blocks_text
from tests.lab import SshdLog, require, ssh_command
from tests.polling import wait_until

pytestmark = pytest.mark.slurm  # the shared test cluster: see tests/conftest.py

LAB = require("TAOBOT_TEST_SSH_KEY", "TAOBOT_TEST_SSH_KNOWN_HOSTS", "TAOBOT_TEST_SSH_USER", "TAOBOT_TEST_SSH_PORT")
USER, PORT = LAB["TAOBOT_TEST_SSH_USER"], LAB["TAOBOT_TEST_SSH_PORT"]
HOST = f"127.0.0.1:{PORT}"
ROOT = LAB["TAOBOT_TEST_TRAIN_DIR"]
SECOND = "U0TAOUSER2"
PUBLIC = re.compile(r"'(ssh-ed25519 [A-Za-z0-9+/=]+ [^'\s]+)'")
HF = "hf_IdentityTestSecretValue0123456789abcXYZ"


def fingerprint_of_file(path: str) -> str:
    out = subprocess.run(["ssh-keygen", "-lf", path], capture_output=True, text=True, check=True).stdout
    return out.split()[1]


LAB_KEY_FP = fingerprint_of_file(LAB["TAOBOT_TEST_SSH_KEY"] + ".pub")  # the key the login node accepts


@pytest.fixture
def authorized_keys():
    """The test login user's authorized_keys, put back exactly as it was whatever the test did to it."""
    path = Path(f"~{USER}/.ssh/authorized_keys").expanduser()
    before = path.read_bytes()
    yield path
    path.write_bytes(before)


def bot_with(tmp_path: Path, slack, **env: str) -> BotProcess:
    base = {"TAOBOT_SSH_KNOWN_HOSTS": LAB["TAOBOT_TEST_SSH_KNOWN_HOSTS"], "TAOBOT_SSH_CONFIG": str(tmp_path / "none")}
    return BotProcess(tmp_path, slack, extra_env={**base, **env}).start()


def as_cluster_user(command: str) -> str:
    """Run a shell command on the login node as the cluster user, logged in the way they log in today."""
    out = subprocess.run(ssh_command() + [command], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def steps_of(text: str) -> list[str]:
    """The commands of the numbered steps in a message, in order."""
    return [line.split("`", 2)[1] for line in text.splitlines() if re.match(r"^(> )?\d\. `", line)]


def slurm_thread(person: SlackUser, hostname: str = HOST, press_key: bool = True) -> tuple[Thread, str]:
    """A SLURM launch up to its credentials: the taobot key pressed (its reply returned) and the form filled in."""
    thread = person.launch("cosmos-rl")
    thread.say("platform=slurm monitor=no")
    card = thread.wait_card("Use a taobot key")
    assert "`TAOBOT_SSH_KEY` (press *Use a taobot key*" in card
    shown = ""
    if press_key:
        thread.press(USE_TAOBOT_KEY)
        shown = thread.wait_reply("Your taobot SSH key")
    view = thread.open_modal(B.OPEN_CREDENTIALS)
    thread.submit(
        view,
        {
            "cred_SLURM_USER": USER,
            "cred_SLURM_HOSTNAME": hostname,
            "cred_SLURM_PARTITION": LAB["TAOBOT_TEST_SLURM_PARTITION"],
            "cred_HF_TOKEN": HF,
        },
    )
    thread.wait_card("`HF_TOKEN` set")
    return thread, shown


def complete(thread: Thread) -> None:
    """The rest of the intake: one CPU per task (the test node has 8), the default image, datasets, compute."""
    thread.submit(thread.open_modal(OPEN_SETTINGS), {"cred_SLURM_CPUS_PER_TASK": "1"})
    thread.wait_reply("SLURM_CPUS_PER_TASK is set.")
    thread.press(B.IMAGE_USE_DEFAULT)
    thread.wait_card("(default, confirmed)")
    thread.say(f"train={ROOT} eval={ROOT} num_gpus=1 num_nodes=1")
    thread.wait_card("status: *complete*")


def preflight(thread: Thread, final: str, again: bool = False) -> str:
    """Press Run preflight (on the card, or `again` on the last preflight card) and wait for the new card's end."""
    before = {m["ts"] for m in thread.replies()}
    if again:
        thread.press_on_reply(B.RUN_PREFLIGHT, "Run preflight again")
    else:
        thread.press(B.RUN_PREFLIGHT)

    def card() -> str | None:
        texts = (blocks_text(m) for m in thread.replies() if m["ts"] not in before)
        return next((t for t in texts if f"Preflight {final}" in t), None)

    return wait_until(
        card, 60, f"a preflight card ({final})", show=lambda: [blocks_text(m)[:160] for m in thread.replies()]
    )


def private_key_of(bot: BotProcess, owner: str) -> str:
    store = bot.store()
    try:
        identity = store.ssh_identity(owner)
        assert identity is not None
        return identity.private_key
    finally:
        store.close()


def assert_private_key_nowhere(bot: BotProcess, slack, private: str) -> None:
    """Not in any call to Slack, any log line, or the bytes of the database files: not as text, not decoded."""
    from cryptography.hazmat.primitives import serialization

    calls = json.dumps([c.params for c in slack.calls], default=str)
    log = bot.log_text()
    raw = b"".join(p.read_bytes() for p in bot.workdir.glob("taobot.db*"))
    body = [line for line in private.splitlines() if line and not line.startswith("-----")]
    seed = serialization.load_ssh_private_key(private.encode(), None).private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    assert len(body) >= 3 and len(seed) == 32
    for line in body:
        assert line not in calls and line not in log and line.encode() not in raw
    assert private not in calls and private not in log
    assert base64.b64decode("".join(body)) not in raw and seed not in raw


# --------------------------------------------------------------------------- a person's own key


def test_the_taobot_key_shown_in_the_thread_installed_as_told_passes_preflight_and_removed_fails_with_the_steps(
    tmp_path, slack, authorized_keys
):
    bot = bot_with(tmp_path, slack)
    try:
        person = SlackUser(bot)
        thread, shown = slurm_thread(person)
        public = PUBLIC.search(shown).group(1)
        fingerprint = re.search(r"SHA256:[A-Za-z0-9+/]+", shown).group(0)
        assert "BEGIN" not in shown and "PRIVATE" not in shown
        # SLURM_USER and SLURM_HOSTNAME given: the exact steps for this user on this login node follow
        steps_text = thread.wait_reply(f"Your taobot key `{fingerprint}`, for `{USER}`")
        assert f"`{USER}` on `{HOST}`" in steps_text
        steps = steps_of(steps_text)
        assert steps[0] == f"mkdir -p ~/.ssh && echo {shlex.quote(public)} >> ~/.ssh/authorized_keys"
        assert steps[1] == "chmod 700 ~/.ssh; chmod 600 ~/.ssh/authorized_keys"
        assert "no password, no agent" in steps_text
        complete(thread)
        # the cluster user follows the steps word for word, on the login node
        for command in steps[:2]:
            as_cluster_user(command)
        assert fingerprint in as_cluster_user(steps[2])
        log = SshdLog()
        text = preflight(thread, "passed")
        assert "with your taobot key" in text and f"your taobot key `{fingerprint}`" in text
        assert f"Accepted publickey for {USER}" in log.text() and fingerprint in log.text()
        assert LAB_KEY_FP not in log.text()  # nothing of the bot host's was offered
        thread.wait_card("Preflight passed.")
        # the line removed again: the same run now fails, with the steps for this user, this host and this key
        as_cluster_user(f"grep -vF {shlex.quote(public)} ~/.ssh/authorized_keys > ~/.ssh/ak.tmp; "
                        "cat ~/.ssh/ak.tmp > ~/.ssh/authorized_keys; rm ~/.ssh/ak.tmp")  # fmt: skip
        log = SshdLog()
        failed = preflight(thread, "failed", again=True)
        assert f"{USER}@127.0.0.1:{PORT} refused the key" in failed
        assert public in failed and f"for `{USER}` on `{HOST}`" in failed
        assert "> 2. `chmod 700 ~/.ssh; chmod 600 ~/.ssh/authorized_keys`" in failed
        assert "SSH_KEY_PATH" not in failed and "ssh-keygen -t ed25519" not in failed  # not the bot host's steps
        assert f"Failed publickey for {USER}" in log.text() and fingerprint in log.text()
        assert LAB_KEY_FP not in log.text()
        assert_private_key_nowhere(bot, slack, private_key_of(bot, person.user))
        assert HF not in json.dumps([c.params for c in slack.calls]) and HF not in bot.log_text()
    finally:
        bot.kill()


def test_two_people_get_their_own_keys_and_one_persons_key_never_logs_in_for_the_other(
    tmp_path, slack, authorized_keys
):
    bot = bot_with(tmp_path, slack)
    try:
        first, second = SlackUser(bot), SlackUser(bot, SECOND)
        one, shown_one = slurm_thread(first)
        two, shown_two = slurm_thread(second)
        key_one, key_two = PUBLIC.search(shown_one).group(1), PUBLIC.search(shown_two).group(1)
        fp_one = re.search(r"SHA256:[A-Za-z0-9+/]+", shown_one).group(0)
        fp_two = re.search(r"SHA256:[A-Za-z0-9+/]+", shown_two).group(0)
        assert key_one.split()[1] != key_two.split()[1] and fp_one != fp_two
        assert "made for you" in shown_one and "made for you" in shown_two
        # asking again (the card has moved on: the reply word) shows the same key, reused
        one.say("taobot key")
        again = wait_until(
            lambda: next((t for t in (blocks_text(m) for m in one.replies()) if "reused for you" in t), None),
            30,
            "the key to be shown again",
        )
        assert fp_one in again
        complete(one)
        complete(two)
        # only the first person's key is installed for the (shared) cluster user
        as_cluster_user(f"echo {shlex.quote(key_one)} >> ~/.ssh/authorized_keys")
        preflight(one, "passed")
        log = SshdLog()
        failed = preflight(two, "failed")
        assert "refused the key" in failed and key_two in failed and key_one not in failed
        seen = log.text()
        assert fp_two in seen and fp_one not in seen and f"Accepted publickey for {USER}" not in seen
        assert private_key_of(bot, first.user) != private_key_of(bot, second.user)
    finally:
        bot.kill()


# --------------------------------------------------------------------------- nothing of the bot host's


def test_a_key_file_outside_the_persons_folder_or_an_agent_is_refused_stored_nowhere_and_never_tried(tmp_path, slack):
    root = tmp_path / "keys"
    (root / ids.USER_ID).mkdir(parents=True)
    (root / SECOND).mkdir()
    theirs = root / SECOND / "id_ed25519"
    shutil.copy(LAB["TAOBOT_TEST_SSH_KEY"], theirs)  # a key the login node accepts, in someone else's folder
    theirs.chmod(0o600)
    (root / ids.USER_ID / "link").symlink_to(LAB["TAOBOT_TEST_SSH_KEY"])  # inside, but pointing out
    bot = bot_with(tmp_path, slack, TAOBOT_SSH_KEY_ROOT=str(root))
    try:
        person = SlackUser(bot)
        thread, _ = slurm_thread(person, press_key=False)
        view = thread.open_modal(B.OPEN_CREDENTIALS)
        field = next(b for b in view["blocks"] if b.get("block_id") == "cred_SSH_KEY_PATH")
        assert field["optional"] and f"{root.resolve() / ids.USER_ID}/" in field["hint"]["text"]
        log = SshdLog()
        for path in (
            LAB["TAOBOT_TEST_SSH_KEY"],
            str(theirs),
            str(root / ids.USER_ID / ".." / SECOND / "id_ed25519"),
            str(root / ids.USER_ID / "link"),
            str(root / ids.USER_ID),
        ):
            resp = thread.submit(view, {"cred_SSH_KEY_PATH": path})
            answer = resp.json()
            assert answer["response_action"] == "errors", (path, answer)
            assert "must name a file in your own key folder" in answer["errors"]["cred_SSH_KEY_PATH"], path
        # the form never shows an agent field; a crafted submission with one is refused the same way
        resp = post_view_submission(
            bot.url, SIGNING_SECRET, person.user, view["callback_id"], view["private_metadata"],
            {"cred_SSH_AUTH_SOCK": {"value": {"type": "plain_text_input", "value": "/tmp/ssh-x/agent.1"}}}, view=view,
        )  # fmt: skip
        assert "is not accepted from Slack" in resp.json()["errors"]["cred_SSH_AUTH_SOCK"]
        store = bot.store()
        try:
            saved = store.secret_fingerprints(person.user)
            state = store.get_intake(thread.intake_id)
            refusals = [r for r in store.audit_rows(actor=person.user) if r["action"] == "ssh_identity"]
        finally:
            store.close()
        assert not {"SSH_KEY_PATH", "SSH_AUTH_SOCK"} & set(saved) and "SSH_KEY_PATH" not in state.credentials
        assert len(refusals) == 6 and not any(r["allowed"] for r in refusals)
        # A key file in the person's own folder is accepted there.
        mine = root / ids.USER_ID / "id_ed25519"
        shutil.copy(LAB["TAOBOT_TEST_SSH_KEY"], mine)
        mine.chmod(0o600)
        thread.submit(view, {"cred_SSH_KEY_PATH": str(mine)})
        thread.wait_card("`SSH_KEY_PATH` set")
        assert LAB_KEY_FP not in log.text()  # none of the refused keys reached the login node
    finally:
        bot.kill()


def test_a_key_file_saved_before_the_rules_is_refused_again_by_preflight_and_launch_without_a_login(tmp_path, slack):
    from taobot.backends.base import LaunchSpec
    from taobot.backends.slurm import SlurmBackend
    from taobot.catalog import load_catalog
    from taobot.config import PlatformSettings
    from taobot.errors import LaunchFailed

    bot = bot_with(tmp_path, slack)
    try:
        person = SlackUser(bot)
        thread, _ = slurm_thread(person, press_key=False)
        # as an older taobot would have stored it: the bot host's own key file, recorded on the thread
        store = bot.store()
        try:
            state = store.get_intake(thread.intake_id)
            state.credentials["SSH_KEY_PATH"] = store.put_secret(
                person.user, "SSH_KEY_PATH", LAB["TAOBOT_TEST_SSH_KEY"], False
            )
            store.save_intake(state, person.user, "test", {})
        finally:
            store.close()
        complete(thread)
        log = SshdLog()
        text = preflight(thread, "failed")
        assert "SSH identity* — refused; no login was tried with it" in text
        assert "`SSH_KEY_PATH` is not accepted from Slack here" in text and "Use a taobot key" in text
        assert "SSH login" not in text
        # the launch refuses it too, before any login
        spec = LaunchSpec(
            launch_id="idtest-00001", platform="slurm", model="cosmos-rl", action="train", image="x", command="x",
            config_format="yaml", spec={}, datasets={}, num_gpus=1, num_nodes=1,
            resources=load_catalog().platforms["slurm"].resources,
            platform_credentials={"SLURM_USER": USER, "SLURM_HOSTNAME": HOST, "SSH_KEY_PATH": LAB["TAOBOT_TEST_SSH_KEY"]},
            job_env={}, labels={"taobot.owner": person.user},
        )  # fmt: skip
        backend = SlurmBackend(PlatformSettings(known_hosts_path=LAB["TAOBOT_TEST_SSH_KNOWN_HOSTS"]))
        with pytest.raises(LaunchFailed, match="taobot refused to log in: `SSH_KEY_PATH` is not accepted from Slack"):
            backend.launch(spec)
        agent = dict(spec.platform_credentials, SSH_KEY_PATH="", SSH_AUTH_SOCK="/tmp/ssh-x/agent.1")
        with pytest.raises(LaunchFailed, match="`SSH_AUTH_SOCK` is not accepted from Slack"):
            backend.launch(LaunchSpec(**{**spec.__dict__, "platform_credentials": agent}))
        assert LAB_KEY_FP not in log.text() and "Connection from" not in log.text()
    finally:
        bot.kill()


def test_the_operators_identity_file_never_logs_in_for_a_slack_person_but_does_on_their_own_machine(tmp_path, slack):
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host tao-login\n  HostName 127.0.0.1\n  Port {PORT}\n  IdentityFile {LAB['TAOBOT_TEST_SSH_KEY']}\n"
    )
    bot = bot_with(tmp_path, slack, TAOBOT_SSH_CONFIG=str(config))
    try:
        thread, shown = slurm_thread(SlackUser(bot), hostname="tao-login")
        own = re.search(r"SHA256:[A-Za-z0-9+/]+", shown).group(0)
        complete(thread)
        log = SshdLog()
        failed = preflight(thread, "failed")
        assert "refused the key" in failed and f"for `{USER}` on `{HOST}`" in failed  # its HostName and Port
        seen = log.text()
        assert own in seen and LAB_KEY_FP not in seen and f"Accepted publickey for {USER}" not in seen
    finally:
        bot.kill()
    # `taobot preflight` runs on the person's own machine: the same config's IdentityFile logs in there
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SSH_", "TAOBOT_"))}
    env.update(
        SLURM_USER=USER,
        SLURM_HOSTNAME="tao-login",
        SLURM_PARTITION=LAB["TAOBOT_TEST_SLURM_PARTITION"],
        SLURM_CPUS_PER_TASK="1",
        SSH_KEY_PATH=LAB["TAOBOT_TEST_SSH_WRONG_KEY"],
        TAOBOT_SSH_CONFIG=str(config),
        TAOBOT_SSH_KNOWN_HOSTS=LAB["TAOBOT_TEST_SSH_KNOWN_HOSTS"],
        TAOBOT_DB=str(tmp_path / "cli.db"),
    )
    log = SshdLog()
    out = subprocess.run(
        [os.sys.executable, "-m", "taobot.cli", "preflight", "--platform", "slurm"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    accepted = [line for line in log.text().splitlines() if f"Accepted publickey for {USER}" in line]
    assert accepted and all(LAB_KEY_FP in line for line in accepted)


# --------------------------------------------------------------------------- per cluster, and host keys


def test_with_keys_per_cluster_each_cluster_gets_its_own_key_and_going_back_reuses_it(tmp_path, slack):
    bot = bot_with(tmp_path, slack, TAOBOT_SSH_KEY_PER_CLUSTER="true")
    try:
        person = SlackUser(bot)
        thread = person.launch("dino")
        thread.say("platform=slurm monitor=no")
        thread.wait_card("Use a taobot key")
        thread.press(USE_TAOBOT_KEY)
        thread.wait_reply("each cluster gets its own key: give `SLURM_HOSTNAME` first")
        assert "`TAOBOT_SSH_KEY` missing" in thread.card_text()

        def give_host(host: str) -> str:
            before = len(thread.replies())
            view = thread.open_modal(B.OPEN_CREDENTIALS)
            thread.submit(view, {"cred_SLURM_HOSTNAME": host} if "(set)" in json.dumps(view) else {
                "cred_SLURM_USER": USER, "cred_SLURM_HOSTNAME": host, "cred_SLURM_PARTITION": "gpu"})  # fmt: skip
            return wait_until(
                lambda: next((blocks_text(m) for m in thread.replies()[before:] if "Your taobot SSH key" in blocks_text(m)), None),
                30,
                f"the key for {host}",
            )  # fmt: skip

        view = thread.open_modal(B.OPEN_CREDENTIALS)
        thread.submit(
            view, {"cred_SLURM_USER": USER, "cred_SLURM_HOSTNAME": "login-a.example.com", "cred_SLURM_PARTITION": "gpu"}
        )
        thread.wait_card("`SLURM_HOSTNAME` set")
        thread.press(USE_TAOBOT_KEY)
        first = thread.wait_reply("for `login-a.example.com`")
        second = give_host("login-b.example.com")
        back = give_host("login-a.example.com")
        fp = [re.search(r"SHA256:[A-Za-z0-9+/]+", t).group(0) for t in (first, second, back)]
        assert fp[0] != fp[1] and fp[2] == fp[0] and "reused for you" in back and "made for you" in second
    finally:
        bot.kill()


def test_an_unknown_host_key_is_refused_unless_the_operator_allows_trusting_it_then_exactly_that_key(
    tmp_path, slack, authorized_keys
):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    bot = bot_with(tmp_path, slack, TAOBOT_SSH_KNOWN_HOSTS=str(empty), TAOBOT_SSH_TOFU="true")
    try:
        thread, shown = slurm_thread(SlackUser(bot))
        as_cluster_user(f"echo {shlex.quote(PUBLIC.search(shown).group(1))} >> ~/.ssh/authorized_keys")
        complete(thread)
        failed = preflight(thread, "failed")
        offered = re.search(r"it offered (\S+) (SHA256:[A-Za-z0-9+/]+)", failed)
        assert offered, failed
        host_keys = {
            fingerprint_of_file(str(p)): p
            for p in Path(LAB["TAOBOT_SERVICES_DIR"], "ssh", "key").glob("ssh_host_*.pub")
        }
        assert offered.group(2) in host_keys  # the fingerprint `ssh-keygen -lf` prints for the server's key
        assert "Host keys are the operator's to manage" in failed and "Trust this host key" in failed
        assert empty.read_text() == ""
        thread.press_on_reply(TRUST_HOST_KEY, "Preflight failed")
        trusted = thread.wait_reply("Trusted the host key")
        assert offered.group(2) in trusted and f"[127.0.0.1]:{PORT}" in trusted
        store = bot.store()
        try:
            (row,) = store.trusted_host_keys()
        finally:
            store.close()
        assert (row.host, row.key_type, row.fingerprint, row.trusted_by) == (
            f"[127.0.0.1]:{PORT}", offered.group(1), offered.group(2), ids.USER_ID)  # fmt: skip
        assert empty.read_text() == ""  # the operator's file is never written
        text = preflight(thread, "passed", again=True)
        assert "with your taobot key" in text
    finally:
        bot.kill()
    # without TAOBOT_SSH_TOFU there is no button, and pressing an old one is refused
    other = tmp_path / "second"
    other.mkdir()
    bot = bot_with(other, slack, TAOBOT_SSH_KNOWN_HOSTS=str(empty))
    try:
        thread, _ = slurm_thread(SlackUser(bot))
        complete(thread)
        failed = preflight(thread, "failed")
        assert "not in known_hosts" in failed and "TAOBOT_SSH_KNOWN_HOSTS" in failed
        assert "Trust this host key" not in failed
        thread.say("trust host key")
        thread.wait_reply("Not trusted: host keys are trusted on first use only where the operator allows it")
    finally:
        bot.kill()


# --------------------------------------------------------------------------- the console, on the person's own machine


def test_the_console_offers_the_same_taobot_key_and_on_the_persons_machine_their_own_key_file_or_agent(tmp_path):
    from taobot.catalog import load_catalog
    from taobot.console import ConsoleIO, run_console
    from taobot.secrets import SecretBox, load_or_create_key
    from taobot.store import Store

    def console(answers: list[str], secrets: list[str] = ()) -> tuple[Store, list[str]]:
        store = Store(tmp_path / "c.db", SecretBox(load_or_create_key(None, tmp_path / "c.db.key")))
        said: list[str] = []
        given, hidden = iter(answers), iter(secrets)

        def ask(prompt: str) -> str:
            said.append(prompt)
            try:
                return next(given)
            except StopIteration:
                raise EOFError from None

        def ask_secret(prompt: str) -> str:
            said.append(prompt)
            try:
                return next(hidden)
            except StopIteration:
                raise EOFError from None

        run_console(store, load_catalog(), "cosmos-rl", "train", io=ConsoleIO(ask, ask_secret, said.append))
        return store, said

    store, said = console(["slurm", "n", "", USER, HOST, "gpu"], [HF])
    try:
        text = "\n".join(said)
        state = store.recent_intakes(limit=1)[0]
        identity = store.ssh_identity(state.owner)
        assert "Press Enter for a taobot key" in text and identity is not None
        assert identity.public_key in text and identity.fingerprint in text
        assert f"Install it for `{USER}` on `{HOST}`" in text  # once SLURM_USER and SLURM_HOSTNAME are given
        assert identity.private_key not in text and "PRIVATE KEY" not in text
        assert state.credentials["TAOBOT_SSH_KEY"] and "SSH_KEY_PATH" not in state.credentials
    finally:
        store.close()
    # A key file of their own anywhere on their machine, or their agent: both theirs to use here.
    store, said = console(["slurm", "n", LAB["TAOBOT_TEST_SSH_KEY"]])
    try:
        state = store.recent_intakes(limit=1)[0]
        assert "SSH_KEY_PATH" in state.credentials
        assert store.get_secret(state.owner, "SSH_KEY_PATH") == LAB["TAOBOT_TEST_SSH_KEY"]
    finally:
        store.close()
    store, said = console(["slurm", "n", "agent"])
    try:
        assert store.recent_intakes(limit=1)[0].ssh_agent is True
        assert any(line.startswith("SSH_AUTH_SOCK") for line in said)  # the agent's socket is asked for next
    finally:
        store.close()


def test_a_rotated_secret_key_re_encrypts_the_taobot_keys_and_a_wrong_one_reads_none(tmp_path):
    from cryptography.fernet import Fernet

    from taobot.errors import SecretError
    from taobot.identities import new_key_pair
    from taobot.secrets import SecretBox
    from taobot.store import Store

    old, new = Fernet.generate_key(), Fernet.generate_key()
    store = Store(tmp_path / "r.db", SecretBox(old))
    made, first = store.ssh_identity_for(ids.USER_ID, "", lambda: new_key_pair(ids.USER_ID))
    again, second = store.ssh_identity_for(ids.USER_ID, "", lambda: new_key_pair(ids.USER_ID))
    assert first and not second and again.private_key == made.private_key  # pressed again: the same key
    store.reencrypt(SecretBox(new))
    store.close()
    reopened = Store(tmp_path / "r.db", SecretBox(new))
    try:
        assert reopened.ssh_identity(ids.USER_ID).private_key == made.private_key
    finally:
        reopened.close()
    stale = Store(tmp_path / "r.db", SecretBox(old))
    try:
        with pytest.raises(SecretError):
            stale.ssh_identity(ids.USER_ID)
    finally:
        stale.close()
