"""The DEFT loop for Cosmos-RL from a Slack thread (the fake Slack, the real bot process): its first stage is an
evaluate, so the training root is the train stage's, kept on the thread for it; the gate over every stage names
the train stage's paths until a preflight has checked them."""

from __future__ import annotations

from tests.harness import SlackUser, blocks_text
from tests.test_workflow_docker import open_workflow


def test_the_train_root_of_a_loop_that_starts_with_an_evaluate_is_kept_for_the_train_stage(bot):
    thread = open_workflow(SlackUser(bot), "workflow deft-loop cosmos-rl")
    thread.say("platform=slurm")
    thread.wait_card("*Platform:* SLURM")
    thread.say("train=/lustre/deft/train")
    said = thread.wait_reply("root for stage `train`")
    assert "`train` root for stage `train`" in said and "`/lustre/deft/train`" in said
    thread.say("train=relative/path")  # checked as the train stage checks it: refused, nothing changed
    refused = thread.wait_reply("Not changed (stage `train`)")
    assert "relative/path" in refused
    store = bot.store()
    try:
        state = store.get_intake(thread.intake_id)
    finally:
        store.close()
    assert state.roots == {"train": "/lustre/deft/train"} and state.action == "evaluate"

    thread.say("launch")
    text = thread.wait_reply("Not launching the workflow")
    assert "Nothing was created." in text
    assert "stage train: not verified by the preflight: `custom.train_dataset.annotation_path` " in text
    assert "(/lustre/deft/train/annotations.json)" in text
    assert not any("Launched `" in blocks_text(m) for m in thread.replies())
