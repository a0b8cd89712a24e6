"""Workflows on the real SLURM cluster, from Slack threads: `/tao workflow train-eval-export dino`.

Each stage is a real sbatch job running the node's stand-in (tests/services/lib/tao-standin), which prints the
sha256 of the checkpoint a later stage is given; the test reads the checkpoint the train stage wrote over ssh
and compares. Also: a pipeline whose second stage fails stops there and *Resume from here* runs that stage and
the ones after it again (the train stage is not submitted twice), and a bot killed (SIGKILL) while the train
stage runs starts the next stage exactly once after its restart.
"""

from __future__ import annotations

import re
import shlex
import uuid

import pytest

from taobot.slack import blocks as B
from taobot.workflows.views import RESUME
from tests.harness import SlackUser, Thread
from tests.polling import wait_until
from tests.slurm_flow import LAB, give_slurm_login, slurm_bot, ssh  # noqa: F401 - slurm_bot is a fixture
from tests.test_workflow_docker import launch_posts, open_workflow, pipeline_card, read_sha

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.slurm_lane(2),
]  # the test cluster, as lane 2's own user: see tests/conftest.py


def dino_root(name: str, **env: str) -> str:
    """A dino dataset root on the login node (images/, annotations.json, and a standin.env saying how the
    stand-in behaves for a job whose config names a path here)."""
    root = f"{LAB['TAOBOT_TEST_LUSTRE_ROOT']}/cases/{name}-{uuid.uuid4().hex[:6]}"
    lines = "".join(f"{k}={v}\n" for k, v in env.items())
    q = shlex.quote(root)
    ssh(f"mkdir -p {q}/images && echo '[]' > {q}/annotations.json && printf %s {shlex.quote(lines)} > {q}/standin.env")
    return root


def dino_workflow(person: SlackUser, train: str, evaluate: str) -> Thread:
    """A complete workflow intake on the lab's SLURM, every stage's image confirmed, preflight passed."""
    thread = open_workflow(person, "workflow train-eval-export dino")
    thread.say("platform=slurm monitor=yes interval=60")
    thread.wait_card("*Platform:* SLURM")
    give_slurm_login(thread)
    thread.press(B.IMAGE_USE_DEFAULT)
    thread.wait_card("(default, confirmed)")
    thread.say(f"train={train} eval={evaluate} num_gpus=1 num_nodes=1")
    thread.wait_card("status: *complete*")
    thread.say("confirm images")
    thread.wait_reply("every stage's image is confirmed")
    preflight(thread)
    return thread


def preflight(thread: Thread) -> None:
    thread.press(B.RUN_PREFLIGHT)
    thread.wait_card("Preflight passed.", timeout=40)


def rows_and_launches(bot, intake_id: str):
    store = bot.store()
    try:
        return store.stage_rows(intake_id), store.launches_for_intake(intake_id)
    finally:
        store.close()


def sha_on_node(path: str) -> str:
    return ssh(f"sha256sum {shlex.quote(path)}").split()[0]


def jobs_of(intake_id: str, at_least: int) -> list[str]:
    """The names of every job the cluster ran or runs for this intake (sacct: one line per job), once its
    accounting lists `at_least` of them: slurmdbd records a job a moment after squeue already shows it ended."""

    def listed() -> list[str]:
        out = ssh("sacct -n -X -P -o JobName%200 -S now-30minutes")
        return [n for n in out.split() if intake_id in n]

    return wait_until(lambda: (lambda names: names if len(names) >= at_least else None)(listed()), 30,
                      f"sacct to list {at_least} jobs of {intake_id}", show=listed, every=1)  # fmt: skip


def test_train_evaluate_export_on_slurm_each_later_stage_reads_the_train_checkpoint(slurm_bot):
    root = dino_root("wf")
    thread = dino_workflow(SlackUser(slurm_bot), root, root)
    thread.press(B.LAUNCH)
    thread.wait_reply("finished: every stage ended", timeout=120)

    rows, launches = rows_and_launches(slurm_bot, thread.intake_id)
    assert [(r.name, r.state) for r in rows] == [
        ("train", "succeeded"),
        ("evaluate", "succeeded"),
        ("export", "succeeded"),
    ]
    assert sorted(ln.action for ln in launches) == ["evaluate", "export", "train"]
    assert all(ln.state.value == "Succeeded" for ln in launches)
    train = rows[0]
    assert train.checkpoint.startswith(train.results + "/train/") and train.checkpoint.endswith("_epoch_003.pth")
    wrote = sha_on_node(train.checkpoint)
    by_id = {ln.id: ln for ln in launches}
    for row in rows[1:]:
        log = ssh(f"cat {shlex.quote(by_id[row.launch_id].log_location)}")
        assert read_sha(log) == (train.checkpoint, wrote), row.name
    onnx = ssh(f"cat {shlex.quote(rows[2].results)}/model.onnx")
    assert onnx == "stand-in onnx of\n" + ssh(f"cat {shlex.quote(train.checkpoint)}")
    assert sorted(jobs_of(thread.intake_id, len(rows))) == sorted(f"tao-dino-{r.name}-{r.launch_id}" for r in rows)

    card = pipeline_card(thread)
    assert "— done" in card
    for row in rows:  # each stage's key metric: the stand-in's last validation accuracy, 1 - 1/(3 + 2)
        assert re.search(
            rf"\*{row.name}\* \({row.name}\) succeeded · [^·]+ · val_accuracy 0.8000 · `{row.launch_id}`", card
        ), card
    assert "Left out: gen_trt_engine: dino has no `gen_trt_engine` action" in card


def test_a_failed_second_stage_stops_the_pipeline_and_resume_runs_it_and_the_later_stages_only(slurm_bot):
    # The train job's config names both roots and reads the first standin.env (the train root's, sorted first);
    # the evaluate job names only the evaluation root, whose stand-in fails with a traceback.
    train = dino_root("a-wftrain")
    evaluate = dino_root("b-wfeval", TAO_STANDIN_FAILURE="traceback", TAO_STANDIN_EPOCHS="1")
    thread = dino_workflow(SlackUser(slurm_bot), train, evaluate)
    thread.press(B.LAUNCH)
    stopped = thread.wait_reply("Workflow stopped at stage `evaluate`", timeout=90)
    assert "ended Failed" in stopped and "Resume from here" in stopped
    rows, launches = rows_and_launches(slurm_bot, thread.intake_id)
    assert [(r.run, r.name, r.state) for r in rows] == [(1, "train", "succeeded"), (1, "evaluate", "failed")]
    assert len(launches) == 2  # the export stage was never submitted
    assert "Resume from evaluate" in pipeline_card(thread)

    ssh(f"printf '' > {shlex.quote(evaluate)}/standin.env")  # the person fixes the evaluation data
    thread.press_on_reply(RESUME, "*Workflow `")
    thread.wait_reply("Resuming from stage `evaluate`")
    preflight(thread)  # a resume checks everything afresh
    thread.press(B.LAUNCH)
    thread.wait_reply("finished: every stage ended", timeout=90)

    rows, launches = rows_and_launches(slurm_bot, thread.intake_id)
    assert [(r.run, r.name, r.state) for r in rows] == [
        (1, "train", "succeeded"),
        (1, "evaluate", "failed"),
        (2, "evaluate", "succeeded"),
        (2, "export", "succeeded"),
    ]
    assert sorted(ln.action for ln in launches) == ["evaluate", "evaluate", "export", "train"]
    names = jobs_of(thread.intake_id, 4)
    assert len(names) == 4 and sum("-train-" in n for n in names) == 1  # train submitted once, in run 1
    # The resumed stages read what the first run's train stage recorded.
    by_id = {ln.id: ln for ln in launches}
    checkpoint = rows[0].checkpoint
    for row in rows[2:]:
        log = ssh(f"cat {shlex.quote(by_id[row.launch_id].log_location)}")
        assert read_sha(log) == (checkpoint, sha_on_node(checkpoint)), row.name
    card = pipeline_card(thread)
    assert "— done" in card and "Resume from" not in card


def test_a_bot_killed_while_the_train_stage_runs_starts_the_next_stage_exactly_once(slurm_bot):
    root = dino_root("wfkill", TAO_STANDIN_SLEEP="3", TAO_STANDIN_EPOCHS="3")
    thread = dino_workflow(SlackUser(slurm_bot), root, root)
    thread.press(B.LAUNCH)

    def train_running():
        _rows, launches = rows_and_launches(slurm_bot, thread.intake_id)
        running = [ln for ln in launches if ln.action == "train" and ln.state.value == "Running"]
        return bool(running and launch_posts(thread, running[0].id)) or None

    wait_until(train_running, 40, "the train stage running, its launch posted")
    slurm_bot.kill()  # SIGKILL: no goodbye, the pipeline's state is only what the store holds
    slurm_bot.start()
    thread.wait_reply("finished: every stage ended", timeout=120)

    rows, launches = rows_and_launches(slurm_bot, thread.intake_id)
    assert [(r.name, r.state) for r in rows] == [
        ("train", "succeeded"),
        ("evaluate", "succeeded"),
        ("export", "succeeded"),
    ]
    assert sorted(ln.action for ln in launches) == ["evaluate", "export", "train"]
    assert sorted(jobs_of(thread.intake_id, len(rows))) == sorted(f"tao-dino-{r.name}-{r.launch_id}" for r in rows)
    for row in rows:  # one launch post per stage, whichever bot process started it
        assert launch_posts(thread, row.launch_id) == 1, row.name
