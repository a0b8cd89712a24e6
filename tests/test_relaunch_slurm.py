"""One-message launches and relaunch with changes, on the real SLURM cluster, from Slack threads.

A person who saved their SLURM settings on an earlier launch writes one message that gives everything but the
model's token: the card asks only for that, preflight passes on the login node, and the card shows the review
with Launch under it. After the job ends, `relaunch num_gpus=4` starts a new launch in the same thread: the
card says what changed, preflight must run again, and the second job's sbatch script asks for the new GPUs
while the first launch's row stays as it was.
"""

from __future__ import annotations

import shlex
import sqlite3

import pytest

from taobot.slack import blocks as B
from taobot.slack import forms as F
from tests.harness import SlackUser, Thread, intake_id_of
from tests.slurm_flow import (  # noqa: F401 - slurm_bot is a fixture
    HF_SECRET,
    LAB,
    give_slurm_login,
    press_launch,
    scenario,
    slurm_bot,
    ssh,
    wait_final,
)
from tests.test_retry_slurm import launched_ids, wait_launch_after

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.slurm_lane(2),
]  # the test cluster, as lane 2's own user: see tests/conftest.py
OTHER = "U0TAOOTHER"


def save_slurm_settings(person: SlackUser) -> None:
    """An earlier thread where the person entered their SLURM settings (not the model's token), then cancelled."""
    thread = person.launch("cosmos-rl")
    thread.say("platform=slurm")
    thread.wait_card("*Platform:* SLURM")
    # The job's size fits the test node (its CPUs): an optional setting, saved for the next launch like the rest.
    give_slurm_login(thread)
    thread.say("cancel")
    thread.wait_card("Cancelled")


def mention_thread(person: SlackUser, text: str) -> Thread:
    ts = person.mention(text)
    card = person.slack.wait_for(
        lambda c: c.method == "chat.postMessage" and c.params.get("thread_ts") == ts and "TAO launch" in str(c.params),
        timeout=45,
    )[0]
    thread = Thread(person, ts, card.response["ts"], intake_id_of(card.params))
    person.bot.wait_saved(thread.intake_id, thread.card_ts)
    return thread


def sbatch_of(store, launch_id: str) -> str:
    folder = store.get_launch(launch_id).detail_map["launch_dir"]
    return ssh(f"cat {shlex.quote(folder)}/sbatch/job.sh")


def test_a_one_message_launch_asks_only_for_the_token_passes_preflight_and_relaunches_with_more_gpus(slurm_bot):
    person = SlackUser(slurm_bot)
    save_slurm_settings(person)
    root = scenario("onemsg", TAO_STANDIN_SLEEP="1", TAO_STANDIN_EPOCHS="2")
    thread = mention_thread(
        person, f"train cosmos-rl on slurm train={root} eval={root} num_gpus=1 num_nodes=1 interval=1 image=default"
    )
    card = thread.wait_card("`SLURM_PARTITION` set")
    # Everything but the model's token came from the message and the saved settings: only HF_TOKEN is asked.
    assert "*Credentials needed:* `HF_TOKEN`." in card, card
    missing = card.split("*Still missing*", 1)[1]
    assert "Credential HF_TOKEN" in missing and "Compute" not in missing and "Dataset" not in missing
    assert "every 1 min" in card and "(default, confirmed)" in card and "num_gpus=1" in card
    thread.submit(thread.open_modal(B.OPEN_CREDENTIALS), {"cred_HF_TOKEN": HF_SECRET})
    thread.wait_card("status: *complete*")
    thread.press(B.RUN_PREFLIGHT)
    card = thread.wait_card("Preflight passed.", timeout=60)
    # The review is on the card, above Launch: platform, exact image, shape, datasets, estimate and its basis.
    assert "Review before launch: cosmos-rl train on SLURM" in card
    assert "*GPUs and nodes:* 1 GPU × 1 node" in card and f"`{root}" in card
    assert "runtime at most 4 h" in card and "SLURM's default; set SLURM_TIME_HOURS to change it" in card
    assert "interval `1 min` (default 5 min)" in card
    blocks = thread.card()["blocks"]
    assert len(blocks) <= 50 and all(len(b.get("text", {}).get("text", "")) <= 3000 for b in blocks)
    review_at = next(i for i, b in enumerate(blocks) if "Review before launch" in str(b))
    launch_at = next(
        i for i, b in enumerate(blocks) if any(el.get("action_id") == B.LAUNCH for el in b.get("elements", []))
    )
    assert review_at < launch_at
    first = press_launch(thread)
    assert "Succeeded" in wait_final(thread, first, 120)

    store = slurm_bot.store()
    try:
        first_row = store.get_launch(first)
        assert "#SBATCH --gres=gpu:1\n" in sbatch_of(store, first)

        # Someone else may not relaunch it; the refusal is audited and changes nothing.
        thread.say("relaunch num_gpus=4", as_user=OTHER)
        person.slack.wait_for(lambda c: c.method == "chat.postEphemeral" and "Only <@" in str(c.params), timeout=30)
        assert store.get_intake(thread.intake_id).status == "launched"

        thread.say("relaunch num_gpus=4 num_nodes=many")
        reply = thread.wait_reply(f"Relaunch of `{first}` with changes: num_gpus 1 → 4")
        assert "Run preflight" in reply
        thread.wait_reply("`num_nodes` needs a whole number")
        card = thread.wait_card(f"Changed since `{first}`")
        assert "num_gpus: `1` → `4`" in card and "preflight has not run" in card
        assert "Review before launch" not in card  # a fresh preflight first
        thread.press(B.RUN_PREFLIGHT)
        thread.wait_card("Preflight passed.", timeout=60)
        thread.press(B.LAUNCH)
        second = wait_launch_after(thread, [first])
        assert launched_ids(thread) == [first, second]
        assert "#SBATCH --gres=gpu:4\n" in sbatch_of(store, second)
        assert "export NUM_GPU_PER_NODE=4" in sbatch_of(store, second)
        assert store.get_launch(first) == first_row  # the first job's row is untouched
        assert "Succeeded" in wait_final(thread, second, 120)

        # The Relaunch button opens the form of what to change; its changes apply like the typed ones.
        before = len(person.slack.calls_for("views.open"))
        thread.press_on_reply(B.RELAUNCH, "Succeeded")
        view = person.slack.wait_for("views.open", count=before + 1, timeout=45)[before].response["view"]
        assert view["callback_id"] == F.RELAUNCH_MODAL
        fields = {b["block_id"]: b["element"].get("initial_value") for b in view["blocks"] if b["type"] == "input"}
        assert fields["relaunch_num_gpus"] == "4" and fields["relaunch_train"] == root
        thread.wait_reply("Same inputs, ready to go again")
        thread.submit(view, {"relaunch_interval": "2", "relaunch_num_gpus": "4"})
        card = thread.wait_card("interval: `1` → `2`")
        assert f"Changed since `{second}`" in card and "num_gpus" not in card.split("Changed since", 1)[1][:120]
        assert len(launched_ids(thread)) == 2  # nothing launched by a relaunch alone
    finally:
        store.close()
    with sqlite3.connect(slurm_bot.db) as db:
        refused = db.execute(
            "SELECT count(*) FROM audit WHERE actor = ? AND allowed = 0 AND intake_id = ?", (OTHER, thread.intake_id)
        ).fetchone()[0]
    assert refused == 1
    assert HF_SECRET not in str([c.params for c in person.slack.calls])
