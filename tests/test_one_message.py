"""One-message launches and `relaunch key=value`: the words of the message read by the thread-reply parser."""

from __future__ import annotations

import sqlite3

from taobot.catalog import load_catalog
from taobot.intake import ConfirmImage, OverrideImage, SetCompute, SetMonitoring, SetRoot, parse_reply, start_intake
from taobot.intake.intents import Relaunch
from taobot.intake.replies import split_launch_text
from taobot.slack.listeners.messages import parse_mention
from tests.harness import SlackUser, Thread, blocks_text, intake_id_of

CATALOG = load_catalog()
HF = "hf_OneMessageSecretAbc123XyzQwe456Rty"


def state():
    return start_intake(CATALOG, "cosmos-rl", "train", "U1", "C1")


def test_a_launch_message_splits_into_its_head_and_one_replys_answers():
    head, answers = split_launch_text("train cosmos-rl on slurm train=/lustre/a num_gpus=8 interval=10")
    assert head == ["train", "cosmos-rl"]
    assert answers == "platform=slurm train=/lustre/a num_gpus=8 interval=10"
    head, answers = split_launch_text('dino evaluate eval="/data/with space" on')
    assert head == ["dino", "evaluate", "on"] and answers == "'eval=/data/with space'"
    parsed = parse_reply(answers, start_intake(CATALOG, "dino", "evaluate", "U1", "C1"), CATALOG)
    assert parsed.events == [SetRoot("eval", "/data/with space")]


def test_a_mention_gives_model_action_and_the_answers_and_a_plain_mention_none():
    assert parse_mention("<@UBOT> train cosmos-rl on slurm num_gpus=8", CATALOG) == (
        "cosmos-rl",
        "train",
        None,
        "platform=slurm num_gpus=8",
    )
    assert parse_mention("<@UBOT> evaluate dino", CATALOG) == ("dino", "evaluate", None, "")
    model, _action, error, answers = parse_mention("<@UBOT> fly dino num_gpus=2", CATALOG)
    assert model == "dino" and "Unknown action `fly`" in error and answers == ""


def test_the_answers_are_the_same_events_a_thread_reply_gives():
    text = split_launch_text("train cosmos-rl on slurm num_gpus=8 interval=10 image=default")[1]
    parsed = parse_reply(text, state(), CATALOG)
    assert not parsed.errors
    assert parsed.events[1:] == [SetCompute("num_gpus", 8), SetMonitoring(interval=10), ConfirmImage()]
    assert parse_reply("image=nvcr.io/nvidia/x:1", state(), CATALOG).events == [OverrideImage("nvcr.io/nvidia/x:1")]


def test_relaunch_with_answers_carries_the_changes_and_the_fields_it_could_not_read():
    intent = parse_reply("relaunch num_gpus=4 num_nodes=two", state(), CATALOG).intent
    assert isinstance(intent, Relaunch) and intent.changes == (SetCompute("num_gpus", 4),)
    assert len(intent.unreadable) == 1 and "`num_nodes` needs a whole number" in intent.unreadable[0]
    same = parse_reply("relaunch", state(), CATALOG).intent
    assert isinstance(same, Relaunch) and same.changes == () and same.launch_id is None
    assert parse_reply(f"relaunch HF_TOKEN={HF}", state(), CATALOG).secret_warning


def mention_thread(person: SlackUser, text: str) -> Thread:
    ts = person.mention(text)
    card = person.slack.wait_for(
        lambda c: c.method == "chat.postMessage" and c.params.get("thread_ts") == ts and "TAO launch" in str(c.params)
    )[0]
    thread = Thread(person, ts, card.response["ts"], intake_id_of(card.params))
    person.bot.wait_saved(thread.intake_id, thread.card_ts)
    return thread


def test_a_one_message_mention_fills_what_it_gives_says_what_it_could_not_read_and_asks_only_the_rest(person):
    thread = mention_thread(
        person,
        "train cosmos-rl on slurm train=/lustre/ds/train eval=/lustre/ds/val num_gpus=8 interval=10 image=default "
        "num_nodes=lots colour=blue",
    )
    card = thread.wait_card("num_gpus=8")
    assert "*Platform:* SLURM" in card and "every 10 min" in card and "(default, confirmed)" in card
    assert "`/lustre/ds/train" in card and "/lustre/ds/val" in card
    reply = thread.wait_reply("`num_nodes` needs a whole number")
    assert "Unknown key `colour`" in reply and "Platform set to SLURM" in reply
    # Only what the message did not give is asked: the credentials, first.
    assert "Credentials needed:" in card and "Still missing" in card
    assert "Where should it run?" not in card and "Container image for" not in card.split("Still missing")[1]


def test_a_one_message_slash_launch_with_a_secret_reads_none_of_it_and_never_echoes_it(person, bot, slack):
    person.slash(f"launch cosmos-rl train on slurm num_gpus=2 HF_TOKEN={HF}")
    card = slack.wait_for(lambda c: c.method == "chat.postMessage" and "TAO launch:" in blocks_text(c.params))[0]
    thread = Thread(person, card.response["ts"], card.response["ts"], intake_id_of(card.params))
    thread.wait_reply("taobot did not read or store it")
    assert "*Platform:* —" in thread.card_text() and "num_gpus=2" not in thread.card_text()
    assert HF not in str([c.params for c in slack.calls]) and HF not in bot.log_text()
    with sqlite3.connect(bot.db) as db:
        dump = "\n".join(db.iterdump())
        refused = db.execute(
            "SELECT count(*) FROM audit WHERE action = 'launch_message' AND allowed = 0 AND intake_id = ?",
            (thread.intake_id,),
        ).fetchone()[0]
    assert HF not in dump and refused == 1
    # The slash form with plain answers applies them like the mention does.
    person.slash("launch dino train on local-docker num_gpus=1")
    wanted = "TAO launch: dino train"
    dino = slack.wait_for(lambda c: c.method == "chat.postMessage" and wanted in blocks_text(c.params))[0]
    dino_thread = Thread(person, dino.response["ts"], dino.response["ts"], intake_id_of(dino.params))
    assert "num_gpus=1" in dino_thread.wait_card("*Platform:* Local Docker")


def test_a_token_pasted_where_the_model_or_action_goes_is_never_echoed(person, bot, slack):
    body = person.slash(f"launch {HF} train").text
    assert "did not read or store it" in body and HF not in body
    person.mention(f"train cosmos-rl {HF}")
    slack.wait_for(lambda c: c.method == "chat.postMessage" and "did not read or store it" in blocks_text(c.params))
    assert HF not in str([c.params for c in slack.calls]) and HF not in bot.log_text()
    assert not [c for c in slack.calls_for("chat.postMessage") if "TAO launch" in blocks_text(c.params)]


def test_the_relaunch_forms_fields_read_as_the_replies_that_change_them():
    from taobot.services.relaunches import answer_words

    assert answer_words("interval", "off") == "monitor=no"
    # A number turns updates back on, even after a launch that ran without them.
    events = parse_reply(answer_words("interval", "7"), state(), CATALOG).events
    assert events == [SetMonitoring(enabled=True), SetMonitoring(interval=7)]
    assert parse_reply(answer_words("train", "/data/a b"), state(), CATALOG).events == [SetRoot("train", "/data/a b")]


def test_an_answer_in_a_launched_thread_says_how_to_relaunch_with_changes():
    from taobot.intake import apply

    launched = state()
    launched.status = "launched"
    (error,) = apply(launched, SetCompute("num_gpus", 8), CATALOG).errors
    assert "`relaunch key=value …`" in error and "/tao launch cosmos-rl" in error


def test_the_relaunch_form_is_a_valid_modal_prefilled_with_the_answers_and_read_back_by_field():
    from taobot.slack import forms as F
    from taobot.slack.render import render
    from taobot.views import RelaunchForm
    from tests.fakes._blocks import validate_view

    values = {"platform": "slurm", "image": "nvcr.io/nvidia/x:1", "num_gpus": "1", "num_nodes": "", "interval": "5"}
    values["train"] = "/lustre/" + "p" * 4000  # too long to prefill: the field says so and stays empty
    view = render(RelaunchForm(state(), "abcd1234-1", values))
    assert validate_view(view) == [] and view["callback_id"] == F.RELAUNCH_MODAL
    initial = {b["block_id"]: b["element"].get("initial_value") for b in view["blocks"] if b["type"] == "input"}
    assert initial["relaunch_num_gpus"] == "1" and initial["relaunch_num_nodes"] is None
    assert initial["relaunch_train"] is None and "too long to show" in str(view)
    intent = F.relaunch_intent({"relaunch_num_gpus": "4", "other": "x"})
    assert isinstance(intent, Relaunch) and intent.fields == (("num_gpus", "4"),) and intent.changes == ()
