"""AutoML searches on the real SLURM cluster, from Slack: each trial is a real launch; the stand-in's validation
loss is a known function of the learning rate in its config, so the best trial the search reports can be checked.

An experiment of 4 trials, 2 at a time, with a kill -9 of the bot in the middle: every trial ran exactly once,
never more than 2 at once, each metric is what the function says, and the best is the function's best. Cancel
stops every trial. Refusals create nothing.
"""

from __future__ import annotations

import json
import math
import signal
import sqlite3
import time

import pytest

from taobot.slack import blocks as B
from taobot.slack.automl_cards import AUTOML_TRAIN_BEST
from tests.harness import SlackUser, Thread, blocks_text
from tests.polling import wait_until
from tests.slurm_flow import HF_SECRET, LAB, give_slurm_login, scenario, slurm_bot, ssh  # noqa: F401 - slurm_bot

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.slurm_lane(1),
]  # the test cluster, as lane 1's own user: see tests/conftest.py


def known_loss(lr: float) -> float:
    """The stand-in's AutoML block: (log10(lr) + 3)^2 + (dropout - 0.1)^2, dropout at its default 0.1."""
    return (math.log10(lr) + 3) ** 2


def open_automl(person: SlackUser, model: str = "cosmos-rl") -> Thread:
    thread = person.open_thread(f"automl {model}")
    experiment_card(thread)
    return thread


def experiment_card(thread: Thread, needle: str = "AutoML search:", timeout: float = 45) -> str:
    def card() -> str | None:
        texts = [blocks_text(m) for m in thread.replies()]
        return next((t for t in texts if "AutoML search:" in t and needle in t), None)

    return wait_until(card, timeout, f"the experiment card to show {needle!r}", every=1,
                      show=lambda: [blocks_text(m)[:300] for m in thread.replies()])  # fmt: skip


def walk_intake(thread: Thread, root: str) -> None:
    """The train intake of the search: platform, monitoring, credentials, image, datasets, compute per trial."""
    thread.say("platform=slurm monitor=yes interval=1")
    thread.wait_card("*Platform:* SLURM")
    give_slurm_login(thread, HF_SECRET)
    thread.press(B.IMAGE_USE_DEFAULT)
    thread.wait_card("(default, confirmed)")
    thread.say(f"train={root} eval={root} num_gpus=1 num_nodes=1")
    thread.wait_card("status: *complete*")


def rows(db, sql: str, *args) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, args).fetchall()


def trials_of(db, intake_id: str) -> list[dict]:
    return [
        json.loads(r[0])
        for r in rows(db, "SELECT trial FROM automl_trials WHERE intake_id = ? ORDER BY number", intake_id)
    ]


def most_at_once(spans: list[tuple[float, float]]) -> int:
    points = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans], key=lambda p: (p[0], p[1]))
    now = top = 0
    for _, step in points:
        now += step
        top = max(top, now)
    return top


def test_four_trials_two_at_a_time_survive_a_kill_9_and_report_the_known_best(slurm_bot):
    person = SlackUser(slurm_bot)
    thread = open_automl(person)
    thread.say("search.train.optm_lr=1e-5..1e-2 search.train.optm_decay_type=off trials=4 parallel=2 epochs=2")
    thread.wait_reply("AutoML plan:")
    card = experiment_card(thread, "`train.optm_lr` 1e-05..0.01")
    assert "`train.optm_decay_type`" not in card and "4 trials, 2 at once, 2 epochs each" in card
    walk_intake(thread, scenario("automl", TAO_STANDIN_SLEEP="4", TAO_STANDIN_EPOCHS="2"))
    experiment_card(thread, ":white_check_mark: GPUs of the trials at once: 2 × 1 = 2 GPUs")
    thread.press(B.RUN_PREFLIGHT)
    thread.wait_card("Preflight passed.", timeout=60)
    thread.press(B.LAUNCH)
    thread.wait_reply("Starting the AutoML search: 4 trials, 2 at once")
    iid, db = thread.intake_id, slurm_bot.db

    # kill -9 while the first two trials run: nothing is lost, nothing launched twice
    wait_until(lambda: len([t for t in trials_of(db, iid) if t["state"] == "running"]) == 2 or None, 90,
               "two trials running", every=1, show=lambda: trials_of(db, iid))  # fmt: skip
    killed_at = time.time()
    slurm_bot.kill(signal.SIGKILL)
    slurm_bot.proc = None
    slurm_bot.start()

    final = wait_until(
        lambda: next((blocks_text(m) for m in thread.replies() if "*Best:*" in blocks_text(m)), None),
        300, "the final reply", every=2, show=lambda: trials_of(db, iid),
    )  # fmt: skip
    trials = trials_of(db, iid)
    assert [t["number"] for t in trials] == [1, 2, 3, 4]
    assert len({t["rec_id"] for t in trials}) == 4 and all(t["state"] == "reported" for t in trials), trials
    launches = rows(db, "SELECT id, job_id, launched_at, ended_at, state FROM launches WHERE intake_id = ?", iid)
    assert sorted(r[0] for r in launches) == [f"{iid}-t{n}" for n in (1, 2, 3, 4)]  # one launch per trial
    assert len({r[1] for r in launches}) == 4 and all(r[4] == "Succeeded" for r in launches), launches

    # The cluster ran exactly four jobs of this search, none twice (slurmdbd lists a job a moment after it ends).
    def ran() -> int:
        return int(ssh(f"sacct -n -X -P -S now-3600 -o JobName | grep -c -- {iid}-t || true").strip() or 0)

    assert wait_until(lambda: ran() >= 4 or None, 30, "sacct to list the four trials", every=1) and ran() == 4
    assert most_at_once([(r[2], r[3]) for r in launches]) <= 2

    for t in trials:  # each metric is the stand-in's function of the values the trial ran with
        assert t["outcome"] == "success" and t["metric"] == pytest.approx(
            known_loss(t["values"]["train.optm_lr"]), abs=2e-6
        )
        assert 1e-5 <= t["values"]["train.optm_lr"] <= 1e-2 and t["values"]["train.epoch"] == 2
        assert t["checkpoint"] and t["checkpoint"].endswith("_model_epoch_002.pth")
    best = min(trials, key=lambda t: known_loss(t["values"]["train.optm_lr"]))
    assert f"*Best:* trial {best['number']}, `val_loss` = {best['metric']:.6g}" in final, final
    assert best["checkpoint"] in final and "4 trial(s)" in final
    card = experiment_card(thread, "done: 4 of 4 trials")
    assert f"*Best so far:* trial {best['number']}" in card and card.count("Succeeded") == 4, card
    assert len([m for m in thread.replies() if "*Best:*" in blocks_text(m)]) == 1  # the final once, after the restart

    assert "AutoML replay recommended" not in slurm_bot.log_text()  # the rebuilt engine recommended as before
    assert [t["number"] for t in trials if t["started_at"] > killed_at] == [3, 4]  # the restarted bot went on

    # interval updates summarise the search: one per slot, even across the kill -9
    summaries = [m for m in thread.slack.messages_in_thread(person.channel, thread.thread_ts)
                 if ((m.get("metadata") or {}).get("event_payload") or {}).get("launch") == f"{iid}-automl"]  # fmt: skip
    slots = [m["metadata"]["event_payload"]["slot"] for m in summaries]
    assert slots.count(-1) == 1  # the final reply, once
    summaries = [m for m, slot in zip(summaries, slots) if slot != -1]
    slots = [slot for slot in slots if slot != -1]
    assert slots and len(slots) == len(set(slots)), slots
    assert all("trials done" in blocks_text(m) and "Best so far" in blocks_text(m) for m in summaries)

    # Train with these values: a normal train thread with the same inputs and the best values, gated afresh
    thread.press_on_reply(AUTOML_TRAIN_BEST, "*Best:*")
    new_iid, overrides = wait_until(
        lambda: (r := rows(db, "SELECT intake_id, overrides FROM automl_prefills WHERE from_intake = ?", iid)) and r[0],
        45, "the prefilled train thread",
    )  # fmt: skip
    assert json.loads(overrides) == best["values"]

    def prefilled() -> dict | None:
        state = json.loads(rows(db, "SELECT state FROM intakes WHERE id = ?", new_iid)[0][0])
        return state if state["platform"] and state["compute"] and state["card_ts"] else None

    state = wait_until(prefilled, 45, "the train thread's answers")
    assert (
        state["kind"] == "launch"
        and state["platform"] == "slurm"
        and state["compute"] == {"num_gpus": 1, "num_nodes": 1}
    )
    assert state["preflight"] is None and state["status"] != "launched"  # through the gate again
    train = Thread(person, state["thread_ts"], state["card_ts"], new_iid)
    assert "Prefilled from AutoML search" in train.wait_reply(f"trial {best['number']}")
    train.press(B.IMAGE_USE_DEFAULT)
    train.wait_card("status: *complete*")
    train.press(B.RUN_PREFLIGHT)
    train.wait_card("Preflight passed.", timeout=60)
    train.press(B.LAUNCH)
    train.wait_reply("Launched `")
    done = wait_until(
        lambda: (r := rows(db, "SELECT state, details FROM launches WHERE intake_id = ? AND ended_at IS NOT NULL", new_iid))
        and r[0], 120, "the train launch to end",
    )  # fmt: skip
    assert done[0] == "Succeeded", done
    config = ssh(f"cat {json.loads(done[1])['launch_dir']}/specs/train.toml")
    assert f"optm_lr = {best['values']['train.optm_lr']!r}" in config, config  # the best value in its spec


def test_cancel_stops_every_trial_and_no_new_one_starts(slurm_bot):
    person = SlackUser(slurm_bot)
    thread = open_automl(person)
    thread.say("search.train.optm_lr=1e-5..1e-2 trials=4 parallel=2")
    thread.wait_reply("AutoML plan:")
    walk_intake(thread, scenario("automl-cancel", TAO_STANDIN_SLEEP="30", TAO_STANDIN_EPOCHS="6"))
    thread.press(B.RUN_PREFLIGHT)
    thread.wait_card("Preflight passed.", timeout=60)
    thread.press(B.LAUNCH)
    iid, db = thread.intake_id, slurm_bot.db
    wait_until(lambda: len([t for t in trials_of(db, iid) if t["state"] == "running"]) == 2 or None, 90,
               "two trials running", every=1, show=lambda: trials_of(db, iid))  # fmt: skip
    experiment_card(thread, "Cancel search")
    thread.press_on_reply(B.CANCEL_JOB, "AutoML search:")
    thread.wait_reply("AutoML search cancelled")
    jobs = [r[0] for r in rows(db, "SELECT job_id FROM launches WHERE intake_id = ?", iid)]
    assert len(jobs) == 2
    wait_until(
        lambda: not ssh(f"squeue -h -j {','.join(jobs)} -o %i 2>/dev/null").strip() or None, 60, "the trials gone"
    )

    def states() -> list[str]:  # slurmdbd records the end a moment after squeue drops the job
        return ssh(f"sacct -n -X -P -j {','.join(jobs)} -o State").splitlines()

    wait_until(
        lambda: len(states()) == 2 and all(s.startswith("CANCELLED") for s in states()) or None,
        30, "both trials CANCELLED in the cluster's accounting", show=states, every=1,
    )  # fmt: skip
    experiment_card(thread, "cancelled:", timeout=60)
    time.sleep(8)  # several monitor cycles: still only the two trials
    assert len(rows(db, "SELECT id FROM launches WHERE intake_id = ?", iid)) == 2
    assert all(t["state"] == "cancelled" for t in trials_of(db, iid)), trials_of(db, iid)
    final = thread.wait_reply(f"AutoML search {iid} cancelled")
    assert "2 trial(s)" in final and "so there is no best one" in final and "cancelled by" in final


def test_a_model_without_automl_and_a_launch_before_preflight_are_refused_and_create_nothing(slurm_bot):
    person = SlackUser(slurm_bot)
    person.slash("automl vila")
    said = person.slack.wait_for("chat.postEphemeral", count=1, timeout=30)[0].params["text"]
    assert "`vila` has no AutoML search" in said and "`cosmos-rl`" in said and "`dino`" in said
    person.mention("automl dinosaur")
    said = person.slack.wait_for("chat.postEphemeral", count=2, timeout=30)[1].params["text"]
    assert "Unknown model `dinosaur`" in said and "`rtdetr`" in said
    assert rows(slurm_bot.db, "SELECT COUNT(*) FROM intakes")[0][0] == 0
    ts = person.mention("automl rtdetr")  # a mention opens the search's thread under it
    card = person.slack.wait_for(
        lambda c: c.method == "chat.postMessage" and c.ok and c.params.get("thread_ts") == ts
        and "AutoML search: rtdetr train" in blocks_text(c.params), timeout=30,
    )[0]  # fmt: skip
    assert "`val_mAP50` (higher is better)" in blocks_text(card.params)
    thread = open_automl(person)
    thread.say("trials=0")
    assert "whole number from 1 to 50" in thread.wait_reply("Nothing in the AutoML plan was changed")
    thread.say("launch")
    refusal = thread.wait_reply("Not starting the AutoML search. Nothing was created.")
    assert "platform chosen" in refusal and "GPUs of the trials at once" in refusal
    assert rows(slurm_bot.db, "SELECT COUNT(*) FROM launches")[0][0] == 0
    assert rows(slurm_bot.db, "SELECT COUNT(*) FROM automl_trials")[0][0] == 0
    assert {json.loads(r[0])["kind"] for r in rows(slurm_bot.db, "SELECT state FROM intakes")} == {"automl"}
    audit = rows(slurm_bot.db, "SELECT action, allowed, reason FROM audit WHERE action LIKE 'automl_%' ORDER BY id")
    assert ("automl_start", 0) == audit[0][:2] and "vila" in json.dumps(audit)
    assert any(a[0] == "automl_launch" and a[1] == 0 and "platform chosen" in a[2] for a in audit), audit


def test_trials_that_fail_count_as_failures_and_the_final_says_there_is_no_best(slurm_bot):
    person = SlackUser(slurm_bot)
    thread = open_automl(person)
    thread.say("search.train.optm_lr=1e-5..1e-2 trials=2 parallel=2")
    thread.wait_reply("AutoML plan:")
    walk_intake(thread, scenario("automl-fail", TAO_STANDIN_SLEEP="1", TAO_STANDIN_EPOCHS="1", TAO_STANDIN_EXIT="3"))
    thread.press(B.RUN_PREFLIGHT)
    thread.wait_card("Preflight passed.", timeout=60)
    thread.press(B.LAUNCH)
    iid, db = thread.intake_id, slurm_bot.db
    final = wait_until(
        lambda: next((blocks_text(m) for m in thread.replies() if "so there is no best one" in blocks_text(m)), None),
        120, "the final reply", every=2, show=lambda: trials_of(db, iid),
    )  # fmt: skip
    assert "2 trial(s)" in final and "Train with these values" not in final
    trials = trials_of(db, iid)
    assert [t["outcome"] for t in trials] == ["failed", "failed"] and all(t["metric"] is None for t in trials)
    journal = json.loads(rows(db, "SELECT journal FROM automl_experiments WHERE intake_id = ?", iid)[0][0])
    assert sorted(op[1] for op in journal if op[0] == "tell") == sorted(t["rec_id"] for t in trials)
    assert all(op[2] is None for op in journal if op[0] == "tell")  # the engine heard of two failures, once each
    card = experiment_card(thread, "done: 2 of 2 trials")
    assert card.count("Failed (failed)") == 2 and "*Best so far:* —" in card, card
