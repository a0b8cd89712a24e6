"""The intake over real HTTP: the bot process, signed Slack requests, the fake Web API."""

from __future__ import annotations

import json
import signal
import sqlite3
import time

import pytest

from taobot.catalog import load_catalog
from taobot.intake.intents import OPEN_SETTINGS, USE_TAOBOT_KEY
from taobot.slack import blocks as B
from taobot.slack import forms as F
from tests.builders import spec_paths
from tests.fakes import ids, post_command, post_event, post_url_verification
from tests.harness import SIGNING_SECRET, BotProcess, SlackUser, Thread, blocks_text

CATALOG = load_catalog()
OTHER_USER = "U0TAOOTHER"

SECRETS = {
    "HF_TOKEN": "hf_SyntheticTestTokenAbc123XyzQwe456",
    "LEPTON_AUTH_TOKEN": "lep-Synthetic-Tok3n-9f8e7d6c5b4a",
    "BREV_API_TOKEN": "brev-Synthetic-T0ken-1a2b3c4d5e6f",
    "SECRET_KEY": "s3cr3tSyntheticKeyValue/Abc+123xyz",
    "KUBE_TOKEN": "kube-SyntheticBearerToken-7f6e5d4c3b2a",  # inside the uploaded kubeconfig
}
SETTINGS = {
    "SLURM_USER": "jdoe",
    "SLURM_HOSTNAME": "login-01.example.com,login-02.example.com:2222",
    "SLURM_PARTITION": "gpu",
    "SSH_KEY_PATH": "/home/bot/.ssh/id_ed25519",
    "LEPTON_WORKSPACE_ID": "ws123",
    "BREV_INSTANCE": "tao-a100",
    "ACCESS_KEY": "AccessKeyIdForTests",
}


def fill_credentials(thread: Thread) -> list[str]:
    view = thread.open_modal(B.OPEN_CREDENTIALS)
    wanted = [b["block_id"] for b in view["blocks"] if b.get("type") == "input" and not b.get("optional")]
    values = {}
    for block_id in wanted:
        name = block_id.removeprefix(F.CRED_BLOCK_PREFIX)
        values[block_id] = SECRETS.get(name) or SETTINGS[name]
    thread.submit(view, values)
    return [b.removeprefix(F.CRED_BLOCK_PREFIX) for b in wanted]


def use_taobot_key(thread: Thread) -> str:
    """Press *Use a taobot key* on the card; the thread's answer shows the public half."""
    thread.press(USE_TAOBOT_KEY)
    return thread.wait_reply("Your taobot SSH key")


def upload_kubeconfig(thread: Thread) -> str:
    """Upload a kubeconfig (a token user) in the credentials form's file field, as a person in Slack does."""
    from taobot.slack.kube_forms import UPLOAD_BLOCK
    from tests.fakes import post_view_submission

    text = (
        "apiVersion: v1\nkind: Config\n"
        "clusters: [{name: lab, cluster: {server: 'https://k8s.example.com:6443'}}]\n"
        f"users: [{{name: me, user: {{token: {SECRETS['KUBE_TOKEN']}}}}}]\n"
        "contexts: [{name: me@lab, context: {cluster: lab, user: me}}]\ncurrent-context: me@lab\n"
    )
    view = thread.open_modal(B.OPEN_CREDENTIALS)
    file = thread.slack.add_file(thread.person.user, "kubeconfig", text.encode())
    state = {UPLOAD_BLOCK: {"value": {"type": "file_input", "files": [file]}}}
    resp = post_view_submission(
        thread.person.bot.url, SIGNING_SECRET, thread.person.user, view["callback_id"], view["private_metadata"],
        state, view=view,
    )  # fmt: skip
    assert resp.status_code == 200, resp
    thread.wait_reply("Your kubeconfig `kubeconfig` is saved")
    return "KUBECONFIG_CONTENT"


def walk_intake(person: SlackUser, platform: str, model: str, action: str = "train") -> Thread:
    """One complete intake the way a person does it, with every kind of input."""
    thread = person.launch(model, action)
    thread.press(B.PLATFORM_SELECT, select=platform)
    thread.wait_card("*Platform:* " + CATALOG.platforms[platform].display_name)
    thread.press(B.MONITOR_YES)
    thread.wait_card("*Monitoring:* in this thread, every 5 min")  # "every 5 min" alone is on the card before
    asked: list[str] = []
    if platform == "kubernetes":  # the identity first: the person's own kubeconfig (no profiles here)
        asked.append(upload_kubeconfig(thread))
    if "Use a taobot key" in thread.card_text():  # the SSH identity first: the person's own key
        use_taobot_key(thread)
        thread.wait_card("`TAOBOT_SSH_KEY` set")
        asked.append("TAOBOT_SSH_KEY")
    if "Enter credentials" in thread.card_text():
        asked += fill_credentials(thread)
    thread.wait_card("Use default image")
    thread.press(B.IMAGE_USE_DEFAULT)
    thread.wait_card("(default, confirmed)")
    pairs = " ".join(f"{k}={v}" for k, v in spec_paths(platform, model, action).items())
    thread.say(pairs)
    thread.wait_card("*Datasets:*\n")
    if "Enter credentials" in thread.card_text():  # s3:// inputs bring in the S3 key pair now
        asked += fill_credentials(thread)
    thread.wait_card("Compute shape")
    thread.press(B.COMPUTE_DEFAULTS)
    thread.wait_card("status: *complete*")
    thread.asked = asked  # type: ignore[attr-defined]
    return thread


def assert_secrets_nowhere(bot: BotProcess, slack) -> None:
    calls = json.dumps([c.params for c in slack.calls], default=str)
    log = bot.log_text()
    raw = b"".join(p.read_bytes() for p in bot.workdir.glob("taobot.db*"))
    for name, value in SECRETS.items():
        assert value not in calls, f"{name} reached Slack"
        assert value not in log, f"{name} reached the log"
        assert value.encode() not in raw, f"{name} is stored in clear"


@pytest.mark.parametrize(
    ("platform", "model", "expected"),
    [
        ("slurm", "cosmos-rl", ["TAOBOT_SSH_KEY", "SLURM_USER", "SLURM_HOSTNAME", "SLURM_PARTITION", "HF_TOKEN"]),
        ("local-docker", "dino", []),
        ("kubernetes", "cosmos-embed", ["KUBECONFIG_CONTENT", "HF_TOKEN", "ACCESS_KEY", "SECRET_KEY"]),
        ("lepton", "rtdetr", ["LEPTON_WORKSPACE_ID", "LEPTON_AUTH_TOKEN", "ACCESS_KEY", "SECRET_KEY"]),
        ("brev", "classification-pyt", ["BREV_API_TOKEN", "BREV_INSTANCE", "ACCESS_KEY", "SECRET_KEY"]),
    ],
)
def test_full_intake_on_each_platform_asks_only_what_it_needs(person, bot, slack, platform, model, expected):
    thread = walk_intake(person, platform, model)
    assert thread.asked == expected
    card = thread.card_text()
    for key, value in spec_paths(platform, model, "train").items():
        assert f"`{key}` = `{value}`" in card
    assert "Intake complete" in card
    assert_secrets_nowhere(bot, slack)
    # Every message the bot sent passed the fake's Block Kit validation.
    assert all(c.ok for c in slack.calls if c.method in ("chat.postMessage", "chat.update", "views.open")), [
        (c.method, c.error) for c in slack.calls if not c.ok
    ]


def test_slash_command_is_acked_fast_and_posts_the_thread_root_with_postmessage(person, slack):
    thread = person.launch("dino", "evaluate")
    root = slack.calls_for("chat.postMessage")[0]
    assert "thread_ts" not in root.params  # the root message; everything else threads under it
    assert "TAO launch: dino evaluate" in thread.card_text()
    thread.say("platform=docker")
    reply = thread.wait_reply("Platform set to Local Docker")
    assert reply
    later = slack.calls_for("chat.postMessage")[-1]
    assert later.params["thread_ts"] == thread.thread_ts


def test_mention_starts_a_thread_under_the_mention(person, slack):
    ts = person.mention("train cosmos-rl")
    call = slack.wait_for(lambda c: c.method == "chat.postMessage" and c.params.get("thread_ts") == ts)[0]
    assert "TAO launch: cosmos-rl train" in blocks_text(call.params)
    person.mention("evaluate dino")
    call = slack.wait_for(lambda c: c.method == "chat.postMessage" and "dino evaluate" in blocks_text(c.params))[0]
    assert call.ok


def test_unknown_model_action_and_subcommand_get_the_list_of_what_exists(person, slack):
    body = person.slash("launch yolo9000").text
    assert "Unknown model `yolo9000`" in body and "cosmos-rl" in body and "dino" in body
    body = person.slash("launch dino fly").text
    assert "Unknown action of dino `fly`" in body and "evaluate" in body
    body = person.slash("deploy dino").text
    assert "Unknown subcommand" in body and "/tao launch" in body
    person.mention("train yolo9000")
    call = slack.wait_for(lambda c: c.method == "chat.postMessage" and "Unknown model" in blocks_text(c.params))[0]
    assert "rtdetr" in blocks_text(call.params)
    assert not [c for c in slack.calls_for("chat.postMessage") if "TAO launch" in blocks_text(c.params)]


def test_unknown_platform_reply_lists_platforms_and_changes_nothing(person):
    thread = person.launch("dino")
    thread.say("platform=aws")
    reply = thread.wait_reply("Unknown platform `aws`")
    assert "slurm" in reply and "kubernetes" in reply
    assert "*Platform:* —" in thread.card_text()


def test_malformed_reply_says_what_shape_is_expected(person):
    thread = person.launch("dino")
    thread.say("please use eight gpus")
    reply = thread.wait_reply("I could not read")
    assert "key=value" in reply


def test_pasted_secret_gets_a_warning_and_is_never_stored_or_echoed(person, bot, slack):
    thread = person.launch("cosmos-rl")
    secret = SECRETS["HF_TOKEN"]
    thread.say(f"my token is {secret}")
    reply = thread.wait_reply("looks like it contains a Hugging Face token")
    assert secret not in reply
    time.sleep(0.3)
    assert_secrets_nowhere(bot, slack)
    with sqlite3.connect(bot.db) as db:
        kinds = [r[0] for r in db.execute("SELECT kind FROM events")]
    assert "secret_warning" in kinds


def test_someone_else_cannot_answer_and_gets_an_ephemeral_explanation(person, slack):
    thread = person.launch("dino")
    thread.press(B.PLATFORM_SELECT, select="slurm", as_user=OTHER_USER)
    eph = slack.wait_for(lambda c: c.method == "chat.postEphemeral")[0]
    assert eph.params["user"] == OTHER_USER and "Only <@" in eph.params["text"]
    thread.say("platform=slurm", as_user=OTHER_USER)
    slack.wait_for(lambda c: c.method == "chat.postEphemeral", count=2)
    assert "*Platform:* —" in thread.card_text()


def test_admin_can_answer_for_the_owner(tmp_path, slack):
    bot = BotProcess(tmp_path, slack, extra_env={"TAOBOT_ADMINS": OTHER_USER}).start()
    try:
        thread = SlackUser(bot).launch("dino")
        thread.press(B.PLATFORM_SELECT, select="slurm", as_user=OTHER_USER)
        thread.wait_card("*Platform:* SLURM")
    finally:
        bot.kill()


def test_operator_default_status_interval_is_offered_and_used(tmp_path, slack):
    bot = BotProcess(tmp_path, slack, extra_env={"TAOBOT_STATUS_INTERVAL_MINUTES": "7"}).start()
    try:
        thread = SlackUser(bot).launch("dino")
        thread.press(B.PLATFORM_SELECT, select="slurm")
        assert "Yes, every 7 min" in thread.wait_card("Yes, every 7 min")
        thread.press(B.MONITOR_YES)
        thread.wait_card("*Monitoring:* in this thread, every 7 min")
    finally:
        bot.kill()


def test_retried_event_delivery_never_produces_a_second_reply(person, slack):
    thread = person.launch("dino")
    thread.say("platform=slurm", event_id="Ev0RETRY001")
    thread.wait_reply("Platform set to SLURM")
    thread.say("platform=slurm", event_id="Ev0RETRY001", retry_num=1)
    thread.say("platform=slurm", event_id="Ev0RETRY001", retry_num=2)
    time.sleep(0.5)
    replies = [blocks_text(m) for m in thread.replies() if "Platform" in blocks_text(m)]
    assert len(replies) == 1, replies


def test_rate_limited_post_is_retried_after_retry_after(person, slack):
    slack.rate_limit("chat.postMessage", times=1, retry_after=1)
    start = time.time()
    thread = person.launch("dino")
    calls = slack.calls_for("chat.postMessage")
    assert [c.status for c in calls[:2]] == [429, 200]
    assert calls[1].timestamp - calls[0].timestamp >= 0.9
    assert time.time() - start < 10
    assert len([c for c in calls if c.ok]) == 1 and thread.card_text()


def test_unsigned_stale_and_forged_requests_are_refused(bot, slack):
    stale = post_command(bot.url, SIGNING_SECRET, text="launch dino", timestamp=int(time.time()) - 600)
    forged = post_command(bot.url, "wrong-secret", text="launch dino")
    assert stale.status_code == 401 and forged.status_code == 401
    ok = post_url_verification(bot.url, SIGNING_SECRET, "challenge-abc")
    assert ok.status_code == 200 and b"challenge-abc" in ok.body
    time.sleep(0.3)
    assert not slack.calls_for("chat.postMessage")


def test_image_override_modal_and_reply_validate_the_reference(tmp_path, slack):
    # Overrides may name only the registries the operator's policy allows (default: the catalog's, nvcr.io).
    policy = tmp_path / "policy.yaml"
    policy.write_text("images:\n  allowed_prefixes: [nvcr.io/, 'registry.local:5000/team/']\n")
    bot = BotProcess(tmp_path, slack, extra_env={"TAOBOT_POLICY": str(policy)}).start()
    try:
        _override_image_through_modal_and_reply(SlackUser(bot))
    finally:
        bot.kill()


def _override_image_through_modal_and_reply(person: SlackUser) -> None:
    thread = person.launch("dino")
    thread.say("platform=docker monitor=no")
    thread.wait_card("*Monitoring:* off")
    view = thread.open_modal(B.IMAGE_OVERRIDE)
    resp = thread.submit(view, {"image_ref": "Not A/Valid Image!"})
    assert resp.json()["response_action"] == "errors" and "image_ref" in resp.json()["errors"]
    thread.say("image=")
    assert "empty" in thread.wait_reply("image override is empty")
    thread.submit(view, {"image_ref": "registry.local:5000/team/tao-custom:1.2"})
    thread.wait_card("`registry.local:5000/team/tao-custom:1.2` (override)")


def test_datasets_modal_in_root_and_spec_mode_shows_concrete_keys(person):
    thread = person.launch("cosmos-rl")
    thread.say("platform=slurm")
    thread.wait_card("*Platform:* SLURM")
    view = thread.open_modal(B.OPEN_DATASETS)
    resp = thread.submit(view, {"root_train": "data/relative", "spec_pairs": "", "results": ""})
    assert "absolute" in json.dumps(resp.json())
    thread.submit(
        view,
        {
            "root_train": "/lustre/team/train",
            "spec_pairs": "custom.val_dataset.annotation_path=/lustre/team/val/my_ann.json\n"
            "custom.val_dataset.media_path=lustre:///lustre/team/val/videos.tar.gz",
        },
    )
    card = thread.wait_card("my_ann.json")
    assert "`custom.train_dataset.annotation_path` = `/lustre/team/train/annotations.json`" in card
    assert "`custom.train_dataset.media_path` = `/lustre/team/train`" in card
    assert "`custom.val_dataset.media_path` = `lustre:///lustre/team/val/videos.tar.gz`" in card


def test_bad_values_each_get_a_clear_answer(person):
    thread = person.launch("dino")
    thread.say("platform=slurm")
    thread.wait_card("*Platform:* SLURM")
    thread.say("num_gpus=0")
    assert "1–8" in thread.wait_reply("num_gpus must be")
    thread.say("interval=90")
    assert "1–60" in thread.wait_reply("status interval must be")
    thread.say("dataset.bogus_key=/lustre/x")
    assert "dataset.train_data_sources[0].json_file" in thread.wait_reply("is not a dataset input")
    thread.say("train=relative/path")
    thread.wait_reply("not an absolute path")
    thread.say("platform=kubernetes")
    thread.wait_card("*Platform:* Kubernetes")
    thread.say("train=file:///data/x")
    assert "s3://" in thread.wait_reply("path on the bot's host")
    thread.say("x" * 5000)
    thread.wait_reply("the most taobot reads is 4000")
    card = thread.card_text()
    assert "*Compute:* —" in card and "*Datasets:* —" in card


def test_answers_can_change_before_launch_and_the_summary_follows(person):
    thread = person.launch("dino")
    thread.say("platform=slurm num_gpus=8 monitor=yes interval=10")
    thread.wait_card("num_gpus=8")
    thread.say("num_gpus=2 interval=1")
    card = thread.wait_card("num_gpus=2")
    assert "every 1 min" in card
    thread.say("platform=local-docker")
    thread.wait_card("*Platform:* Local Docker")


def test_an_ssh_agent_is_never_offered_in_slack_and_refused_when_asked_for(person, bot, slack):
    thread = person.launch("dino")
    thread.say("platform=slurm monitor=no")
    thread.wait_card("Enter credentials")
    card = thread.card()
    assert "SSH_AUTH_SOCK" not in thread.card_text()
    assert B.USE_SSH_AGENT not in json.dumps(card) and USE_TAOBOT_KEY in json.dumps(card)
    view = thread.open_modal(B.OPEN_CREDENTIALS)
    assert "cred_SSH_AUTH_SOCK" not in [b.get("block_id") for b in view["blocks"]]
    # An agent on the bot's host holds its operator's keys: the reply word is refused, with what to do instead.
    thread.say("I use an SSH agent")
    refusal = thread.wait_reply("is not accepted from Slack")
    assert "`SSH_AUTH_SOCK`" in refusal and "Use a taobot key" in refusal and "taobot console" in refusal
    assert "`SSH_AUTH_SOCK` missing" not in thread.card_text() and "`TAOBOT_SSH_KEY` missing" in thread.card_text()
    store = bot.store()
    try:
        assert store.get_intake(thread.intake_id).ssh_agent is False
        refused = [r for r in store.audit_rows(actor=person.user) if r["action"] == "ssh_agent"]
        assert refused and not refused[-1]["allowed"] and "not accepted from Slack" in refused[-1]["reason"]
    finally:
        store.close()


def test_cancel_ends_the_intake_and_later_replies_are_refused(person):
    thread = person.launch("dino")
    thread.say("cancel")
    thread.wait_card("Cancelled")
    thread.say("platform=slurm")
    thread.wait_reply("This intake is cancelled")


def test_kill_9_mid_intake_loses_nothing(tmp_path, slack):
    bot = BotProcess(tmp_path, slack).start()
    person = SlackUser(bot)
    thread = person.launch("cosmos-rl")
    thread.say("platform=slurm monitor=yes interval=2")
    thread.wait_card("*Monitoring:* in this thread, every 2 min")
    use_taobot_key(thread)
    fill_credentials(thread)
    thread.wait_card("`HF_TOKEN` set")
    bot.kill(signal.SIGKILL)
    bot.proc = None
    bot.start()
    thread.say("train=/lustre/a/train eval=/lustre/a/val")
    card = thread.wait_card("/lustre/a/val/annotations.json")
    assert "every 2 min" in card and "`TAOBOT_SSH_KEY` set" in card and "`HF_TOKEN` set" in card
    bot.kill()


def test_saved_credentials_are_reused_on_the_next_launch(person):
    first = person.launch("cosmos-rl")
    first.say("platform=slurm monitor=no")
    first.wait_card("Enter credentials")
    use_taobot_key(first)
    fill_credentials(first)
    first.wait_card("`HF_TOKEN` set")
    second = person.launch("cosmos-rl", "evaluate")
    second.say("platform=slurm monitor=no")
    card = second.wait_card("`HF_TOKEN` set")
    assert "`SLURM_USER` set" in card and "Enter credentials" not in card


def test_status_lists_this_channels_launches_and_one_by_id(person):
    thread = person.launch("dino")
    thread.say("platform=slurm")
    thread.wait_card("*Platform:* SLURM")
    listing = person.slash("status").text
    assert thread.intake_id in listing and "dino train" in listing and "SLURM" in listing
    detail = person.slash(f"status {thread.intake_id}").text
    assert f"Launch `{thread.intake_id}`" in detail
    assert "No launch `ffffffff`" in person.slash("status ffffffff").text
    assert "/tao launch" in person.slash("help").text


def test_button_on_an_unknown_launch_explains_it_is_unknown(person, slack, bot):
    thread = person.launch("dino")
    with sqlite3.connect(bot.db) as db:
        db.execute("DELETE FROM intakes")
    thread.press(B.PLATFORM_SELECT, select="slurm")
    eph = slack.wait_for(lambda c: c.method == "chat.postEphemeral")[0]
    assert "unknown to taobot" in eph.params["text"]


def test_expired_intake_says_so(tmp_path, slack):
    bot = BotProcess(tmp_path, slack, extra_env={"TAOBOT_INTAKE_EXPIRY_DAYS": "1"}).start()
    try:
        thread = SlackUser(bot).launch("dino")
        with sqlite3.connect(bot.db) as db:
            row = db.execute("SELECT state FROM intakes").fetchone()
            state = json.loads(row[0])
            state["updated_at"] -= 3 * 86400
            db.execute("UPDATE intakes SET state = ?", [json.dumps(state)])
        thread.say("platform=slurm")
        thread.wait_reply("expired after 1 days")
    finally:
        bot.kill()


def test_bot_messages_and_edits_are_ignored(person, slack, bot):
    thread = person.launch("dino")
    before = len(slack.calls_for("chat.postMessage"))
    ts = slack.seed_message(ids.CHANNEL_ID, "platform=slurm", thread_ts=thread.thread_ts)
    post_event(
        bot.url,
        SIGNING_SECRET,
        {
            "type": "message",
            "subtype": "bot_message",
            "bot_id": "B1",
            "text": "platform=slurm",
            "ts": ts,
            "thread_ts": thread.thread_ts,
            "channel": ids.CHANNEL_ID,
        },
    )
    post_event(
        bot.url,
        SIGNING_SECRET,
        {
            "type": "message",
            "subtype": "message_changed",
            "channel": ids.CHANNEL_ID,
            "ts": ts,
            "message": {"text": "platform=slurm"},
        },
    )
    time.sleep(0.5)
    assert len(slack.calls_for("chat.postMessage")) == before


# --------------------------------------------------------------------------- intake rules to the letter


def _inputs(view: dict) -> list[str]:
    return [b["block_id"] for b in view["blocks"] if b.get("type") == "input"]


def test_slurm_asks_for_the_ssh_identity_first(person):
    thread = person.launch("cosmos-rl")
    thread.say("platform=slurm monitor=no")
    card = thread.wait_card("Enter credentials")
    assert (
        "*Credentials needed:* `TAOBOT_SSH_KEY` (press *Use a taobot key*: your own SSH key), `SLURM_USER`, "
        "`SLURM_HOSTNAME`, `SLURM_PARTITION`, `HF_TOKEN`"
    ) in card
    view = thread.open_modal(B.OPEN_CREDENTIALS)
    # the key is made by taobot, never typed; without TAOBOT_SSH_KEY_ROOT no key file is offered from Slack
    assert "*TAOBOT_SSH_KEY* (not set yet)" in blocks_text(view)
    assert _inputs(view)[:3] == ["cred_SLURM_USER", "cred_SLURM_HOSTNAME", "cred_SLURM_PARTITION"]
    assert "cred_SSH_KEY_PATH" not in _inputs(view) and "cred_TAOBOT_SSH_KEY" not in _inputs(view)


def test_optional_settings_are_asked_for_only_through_more_settings(person, bot):
    thread = person.launch("cosmos-rl")
    thread.say("platform=slurm monitor=no")
    thread.wait_card("Enter credentials")
    view = thread.open_modal(B.OPEN_CREDENTIALS)
    always = [
        "SLURM_ACCOUNT",
        "SLURM_CPUS_PER_TASK",
        "SLURM_TIME_HOURS",
        "SLURM_TIMEOUT_HOURS",
        "SLURM_BASE_RESULTS_DIR",
    ]
    assert not {f"cred_{n}" for n in always} & set(_inputs(view)), _inputs(view)
    fill_credentials(thread)
    thread.wait_card("`HF_TOKEN` set")
    more = thread.open_modal(OPEN_SETTINGS)
    assert more["callback_id"] == F.SETTINGS_MODAL
    assert {f"cred_{n}" for n in always} <= set(_inputs(more))
    assert all(b["optional"] for b in more["blocks"] if b.get("type") == "input")
    refused = thread.submit(more, {"cred_SLURM_CPUS_PER_TASK": "lots"})
    assert refused.json()["response_action"] == "errors" and "cred_SLURM_CPUS_PER_TASK" in refused.json()["errors"]
    thread.submit(more, {"cred_SLURM_CPUS_PER_TASK": "8", "cred_SLURM_ACCOUNT": "tao"})
    card = thread.wait_card("`SLURM_CPUS_PER_TASK` set (optional)")
    assert "`SLURM_ACCOUNT` set (optional)" in card
    thread.wait_reply("SLURM_CPUS_PER_TASK is set.")
    store = bot.store()
    try:
        assert store.get_secret(person.user, "SLURM_CPUS_PER_TASK") == "8"
    finally:
        store.close()
    again = thread.open_modal(OPEN_SETTINGS)
    label = next(b["label"]["text"] for b in again["blocks"] if b.get("block_id") == "cred_SLURM_CPUS_PER_TASK")
    assert label == "SLURM_CPUS_PER_TASK (set)"


def test_a_partial_compute_answer_keeps_the_default_for_the_rest_and_the_button_names_what_it_fills(person):
    thread = person.launch("cosmos-rl")
    thread.say("num_gpus=8")  # before a platform: its defaults are unknown, nothing is filled
    thread.wait_card("num_gpus=8")
    thread.say("platform=slurm monitor=no")
    thread.wait_card("Enter credentials")
    use_taobot_key(thread)
    fill_credentials(thread)
    thread.wait_card("Use default image")
    thread.press(B.IMAGE_USE_DEFAULT)
    thread.wait_card("(default, confirmed)")
    thread.say("train=/lustre/a/train eval=/lustre/a/val")
    card = thread.wait_card("Compute shape")
    assert "num_gpus=8 given; the platform default for the rest is num_nodes=1" in card
    assert "Use default (num_nodes=1)" in card and "num_gpus=4" not in card
    thread.say("num_gpus=2")
    reply = thread.wait_reply("num_nodes = 1 (platform default")
    assert "num_gpus = 2." in reply
    card = thread.wait_card("status: *complete*")
    assert "*Compute:* num_gpus=2, num_nodes=1" in card


def test_replies_also_sent_to_the_channel_or_with_a_file_are_answered(person, slack):
    thread = person.launch("dino")
    thread.say("platform=slurm", subtype="thread_broadcast")
    thread.wait_card("*Platform:* SLURM")
    assert "Platform set to SLURM" in thread.wait_reply("Platform set to SLURM")
    upload = [
        {"id": "F0TAO1", "name": "spec.yaml", "mimetype": "text/plain", "url_private": "https://files.example/F0TAO1"}
    ]
    thread.say("monitor=no", subtype="file_share", files=upload)
    thread.wait_card("*Monitoring:* off")
    thread.say("", subtype="file_share", files=upload)
    reply = thread.wait_reply("the attached file was not read")
    assert "key=value" in reply
    # the files are never fetched
    assert not [c for c in slack.calls if "files." in c.method]
    # someone else's broadcast is refused like any reply
    thread.say("platform=kubernetes", as_user=OTHER_USER, subtype="thread_broadcast")
    slack.wait_for(lambda c: c.method == "chat.postEphemeral" and c.params.get("user") == OTHER_USER)
    assert "*Platform:* SLURM" in thread.card_text()
