"""Training progress read from what TAO writes, and how updates and final replies show it.

Pure, but for Lepton, whose log API is the fake Lepton server's (tests/fakes).

The records below have the shapes TAO's own status loggers write: today's PyTorch callbacks (epochs counted
from 0, `step`/`max_step`, "Eval metrics generated." before and "Train metrics generated." after the epoch's
record, the logger repeating its last `kpi` on later records), the older 1-based PyTorch callback, the
TensorFlow/Keras callback (losses in `graphical`, accuracy and mAP in `kpi`, values as strings), iteration-based
networks, and an evaluation's SUCCESS record. Log lines are those of the stand-in, Keras, PyTorch Lightning's
progress bar and checkpoint callback.
"""

from __future__ import annotations

import json
import time

import pytest

from taobot.backends.base import JobState, JobStatus
from taobot.backends.slurm_poll import parse_poll_output, poll_script
from taobot.backends.tao_status import TAIL_LINES, log_digest, with_progress
from taobot.launches import JobState as LaunchState
from taobot.progress import FROM_BOTH, FROM_FILE, FROM_LOG, duration_s, kind_of, number, read_progress
from taobot.slack.render import render
from taobot.stuck import OutputWatch, Stuck, StuckRules, stuck_signals
from taobot.view_text import metric, silence_notice
from taobot.views import FinalUpdate, StatusUpdate
from tests.builders import launch_record
from tests.test_blocks import assert_message_ok


def rec(status: str = "RUNNING", message: str = "Training loop in progress", **fields) -> str:
    base = {"date": "5/1/2026", "time": "9:3:7", "status": status, "verbosity": "INFO", "message": message}
    return json.dumps({**base, **fields})


def pytorch_today(epochs: int, total: int, val_every: int = 1) -> list[str]:
    """What today's TAO PyTorch callbacks write for `epochs` epochs of a `total`-epoch run."""
    lines = [rec("STARTED", "Starting Training Loop.")]
    kpi: dict = {}  # the logger keeps its last kpi and repeats it on every record
    for e in range(epochs):
        if (e + 1) % val_every == 0:
            kpi = {"val_loss": round(0.9 - 0.1 * e, 4), "val_mAP": str(round(0.2 + 0.05 * e, 4)), "val_mAP50": "0.5"}
            lines.append(rec(message="Eval metrics generated.", kpi=kpi))
        lines.append(
            rec(
                epoch=e,
                step=(e + 1) * 100,
                max_epoch=total - 1,
                max_step=total * 100,
                time_per_epoch="0:01:30.250000",
                time_per_step="0:00:00.902500",
                eta=f"0:{total - 1 - e:02d}:00",  # a minute per epoch left, so the ETA read is plainly the written one
                kpi=kpi,
            )
        )
        kpi = {"train_loss": round(1.0 / (e + 2), 4)}
        lines.append(rec(message="Train metrics generated.", kpi=kpi))
    return lines


# --------------------------------------------------------------------------- the status file


def test_todays_pytorch_records_count_from_zero_and_each_metric_goes_to_its_own_epoch():
    p = read_progress(pytorch_today(3, 10))
    assert p is not None and p.source == FROM_FILE
    assert (p.unit, p.done, p.total) == ("epoch", 3, 10)  # epoch 2 of 0..9 done: 3 of 10
    assert (p.loss_name, p.train_loss) == ("train_loss", 0.25)
    assert p.validation == (("val_loss", 0.7), ("val_mAP", 0.3), ("val_mAP50", 0.5))
    assert p.validation_epoch == 3
    assert p.time_per_epoch_s == pytest.approx(90.25)
    assert p.eta_s == 7 * 60  # as written on the last epoch record (0:07:00), not recomputed
    assert [(e.epoch, e.train_loss) for e in p.epochs] == [(1, 0.5), (2, 0.3333), (3, 0.25)]
    assert [dict(e.validation)["val_loss"] for e in p.epochs] == [0.9, 0.8, 0.7]


def test_a_kpi_the_logger_repeats_is_not_read_as_the_next_epochs():
    # Validation every second epoch: epoch 2's record repeats epoch 1's train_loss, which must not become epoch 2's.
    p = read_progress(pytorch_today(4, 4, val_every=2))
    by_epoch = {e.epoch: e for e in p.epochs}
    assert [by_epoch[n].train_loss for n in (1, 2, 3, 4)] == [0.5, 0.3333, 0.25, 0.2]
    assert not by_epoch[1].validation and not by_epoch[3].validation
    assert dict(by_epoch[2].validation)["val_loss"] == 0.8 and dict(by_epoch[4].validation)["val_loss"] == 0.6
    assert p.finished_training and p.done == 4


def test_one_based_records_with_keras_graphical_and_string_values():
    lines = [rec("STARTED", "Starting Training Loop.")]
    for e in (1, 2):
        lines.append(
            rec(
                epoch=e,
                max_epoch=5,
                time_per_epoch="1 day, 2:03:04.500000",
                eta="0:00:10",
                graphical={"loss": f"0.{9 - e}", "validation_loss": "0.95", "learning_rate": "0.001"},
                kpi={"validation_accuracy": f"0.{5 + e}", "mean average precision": {"value": "0.4"}},
            )
        )
    lines.append(
        rec(
            message="Training loop complete.",
            kpi={"validation_accuracy": "0.7", "mean average precision": {"value": "0.4"}},
        )
    )
    p = read_progress(lines)
    assert (p.done, p.total, p.train_loss, p.loss_name) == (2, 5, 0.7, "loss")
    assert p.time_per_epoch_s == 86400 + 2 * 3600 + 3 * 60 + 4.5 and p.eta_s == 10
    assert dict(p.validation) == {"validation_accuracy": 0.7, "mean average precision": 0.4, "validation_loss": 0.95}
    assert "learning_rate" not in dict(p.validation)


def test_iteration_based_records_count_iterations():
    lines = [rec(cur_iter=i, max_iter=1000, time_per_iter="0:00:01.500000", kpi={"loss": 2.0 / i}) for i in (100, 200)]
    p = read_progress(lines)
    assert (p.unit, p.done, p.total, p.train_loss) == ("iteration", 200, 1000, 0.01)
    assert p.time_per_epoch_s == 1.5 and p.eta_s == pytest.approx(800 * 1.5)


def test_an_evaluation_reports_its_metrics_not_as_an_epoch():
    p = read_progress([rec("SUCCESS", "Eval metrics generated.", kpi={"accuracy": 91.5, "avg_accuracy": 88.25})])
    assert p.final == "SUCCESS" and p.done is None and p.epochs == () and p.validation_epoch is None
    assert dict(p.validation) == {"accuracy": 91.5, "avg_accuracy": 88.25}


def test_time_per_epoch_comes_from_the_records_clocks_when_not_written():
    lines = [
        json.dumps({"date": "5/1/2026", "time": t, "status": "RUNNING", "epoch": n, "max_epoch": 4})
        for n, t in ((1, "9:0:0"), (2, "9:2:0"), (3, "9:4:0"))
    ]
    p = read_progress(lines)
    assert p.time_per_epoch_s == 120 and p.eta_s == 120


def test_values_that_are_no_numbers_are_left_out():
    assert number("0.5") == 0.5 and number({"value": 3}) == 3 and number(2) == 2.0
    assert number("nan") is None and number(float("inf")) is None and number(True) is None and number("x") is None
    assert (
        duration_s("0:00:40") == 40
        and duration_s("2 days, 0:00:01.5") == 2 * 86400 + 1.5
        and duration_s("soon") is None
    )
    assert kind_of("val_loss") == "val" and kind_of("train_loss") == "train" and kind_of("loss") == "train"
    assert kind_of("lr") is None and kind_of("lr-SGD") is None and kind_of("time_per_epoch") is None


def test_nothing_said_is_no_progress():
    assert read_progress() is None
    assert read_progress(["not json", "{broken", json.dumps([1, 2])], ["hello", "Loading dataset…"]) is None
    assert read_progress([rec("STARTED", "Starting Training Loop.")]) is None


# --------------------------------------------------------------------------- the log


STANDIN_LOG = [
    "[dino] tao-standin starting on vm (pid 7, slurm job 12)",
    "[dino] epoch 1/3 loss=0.5000 val_loss=0.5500",
    "Epoch 1, global step 10: 'val_loss' reached 0.5500 (best 0.5500), saving model to '/r/train/dino_model_epoch_001.pth' as top 1",
    "[dino] epoch 2/3 loss=0.3333 val_loss=0.3833",
    "Epoch 2, global step 20: 'val_loss' reached 0.3833 (best 0.3833), saving model to '/r/train/dino_model_epoch_002.pth' as top 1",
]


def test_the_log_alone_gives_epoch_loss_validation_and_the_last_checkpoint():
    p = read_progress((), STANDIN_LOG)
    assert p.source == FROM_LOG
    assert (p.done, p.total, p.train_loss, p.loss_name) == (2, 3, 0.3333, "loss")
    assert p.validation == (("val_loss", 0.3833),) and p.validation_epoch == 2
    assert p.checkpoint == "/r/train/dino_model_epoch_002.pth"
    assert [(e.epoch, e.train_loss, e.validation) for e in p.epochs] == [
        (1, 0.5, (("val_loss", 0.55),)),
        (2, 0.3333, (("val_loss", 0.3833),)),
    ]


def test_keras_lines_progress_bars_and_other_checkpoint_phrases():
    keras = ["Epoch 3/10", "120/120 [====] - 35s 290ms/step - loss: 0.2345 - accuracy: 0.91 - val_loss: 0.3100"]
    p = read_progress((), keras + ["Saved checkpoint to s3://bucket/run/ckpt/step_300"])
    assert (p.done, p.total, p.train_loss) == (3, 10, 0.2345)
    assert (
        dict(p.validation) == {"accuracy": 0.91, "val_loss": 0.31} and p.checkpoint == "s3://bucket/run/ckpt/step_300"
    )
    bar = "Epoch 4: 10%|█| 1/10 [00:01<00:09, v_num=0, train_loss=0.90]\rEpoch 4: 100%|██| 10/10 [00:10<00:00, v_num=0, train_loss=0.41, val_loss=0.52]"
    p = read_progress((), [bar, "INFO: checkpoint saved at /results/train/model_epoch_004.pth."])
    assert (p.done, p.total, p.train_loss) == (5, None, 0.41)  # Lightning counts from 0
    assert p.validation == (("val_loss", 0.52),) and p.checkpoint == "/results/train/model_epoch_004.pth"


def test_status_records_echoed_to_the_log_are_read_as_records():
    echoed = ["INFO " + line for line in pytorch_today(2, 5)]
    p = read_progress((), echoed)
    assert p.source == FROM_LOG and (p.done, p.total, p.train_loss) == (2, 5, 0.3333)


def test_the_status_file_wins_and_the_log_adds_the_checkpoint():
    file_lines = [rec(epoch=2, max_epoch=3, kpi={"train_loss": 0.3, "val_loss": 0.4})]
    p = read_progress(file_lines, STANDIN_LOG)
    assert p.source == FROM_BOTH and p.train_loss == 0.3 and p.validation == (("val_loss", 0.4),)
    assert p.checkpoint == "/r/train/dino_model_epoch_002.pth"
    assert read_progress(file_lines, ["no metrics here"]).source == FROM_FILE


# --------------------------------------------------------------------------- what the backends put on a status


def test_with_progress_keeps_the_tail_short_and_its_mark_follows_the_log():
    lines = [f"line {i}" for i in range(150)] + STANDIN_LOG
    status = with_progress(JobStatus(JobState.RUNNING, "Running"), lines)
    assert status.log_tail == tuple(lines[-TAIL_LINES:]) and status.progress.done == 2
    assert status.log_mark == log_digest(lines) and log_digest(lines + ["more"]) != status.log_mark
    assert with_progress(JobStatus(JobState.PENDING, "Pending"), []).log_mark is None


def test_a_slurm_poll_answer_gives_each_job_its_progress_tail_and_log_size():
    from taobot.backends.base import JobRef

    jobs = [JobRef("a-1", "11", {"launch_dir": "/h/a"}, {}), JobRef("b-1", "12", {"launch_dir": "/h/b"}, {})]
    script, tails, logs = poll_script(jobs, {"11"})
    # one stat, one awk for every file; the due job's records and log, the other's last records only
    assert script.count("stat -c") == 1 and script.count("| awk ") == 1
    assert "tail -n 600 -- /h/a/results/status.json" in script and "tail -c 2000000 -- /h/a/logs/slurm-11.out" in script
    assert "tail -n 5 -- /h/b/results/status.json" in script and "-- /h/b/logs/slurm-12.out 2>" not in script
    out = "\n".join(
        [
            "ACCT|11|RUNNING|0:0|None",
            "ACCT|12|RUNNING|0:0|None",
            "END|acct",
            "END|squeue",
            *(f"P|11|{line}" for line in pytorch_today(2, 4)),
            *(f"G|11|{line}" for line in STANDIN_LOG[:2]),
            f"CK|11|{STANDIN_LOG[2]}",
            "SZ|5120|/h/a/logs/slurm-11.out",
            "SZ|77|/h/b/logs/slurm-12.out",
            "T|==> /h/a/logs/slurm-11.out <==",
            "T|[dino] epoch 2/4 loss=0.3333",
        ]
    )
    got = parse_poll_output(out, ["11", "12"], tails, logs)
    assert got["11"].progress.done == 2 and got["11"].progress.total == 4 and got["11"].progress.source == FROM_BOTH
    assert got["11"].progress.checkpoint == "/r/train/dino_model_epoch_001.pth"
    assert got["11"].log_tail == ("[dino] epoch 2/4 loss=0.3333",)
    assert (got["11"].log_mark, got["12"].log_mark) == ("5120", "77")
    assert got["12"].progress is None and got["12"].log_tail == ()


# --------------------------------------------------------------------------- stuck signals


def test_pending_and_silent_signals_follow_their_thresholds():
    rules = StuckRules.minutes(30, 25)
    now = time.time()
    pending = launch_record(state=LaunchState.PENDING, native="PENDING", reason="Resources", state_since=now - 29 * 60)
    assert stuck_signals(pending, now, rules, None) == ()
    (signal,) = stuck_signals(pending, now + 120, rules, None)
    assert signal.kind == "pending" and signal.seconds == 31 * 60 and signal.reason == "Resources"
    running = launch_record(state=LaunchState.RUNNING)
    assert stuck_signals(running, now, rules, 24 * 60) == ()
    assert stuck_signals(running, now, rules, 25 * 60)[0].kind == "silent"
    assert stuck_signals(running.with_changes(ended_at=now), now, rules, 3600) == ()
    assert stuck_signals(running.with_changes(unreachable="ssh down"), now, rules, 3600) == ()


def test_the_watch_counts_from_the_last_change_of_the_mark():
    watch = OutputWatch()
    watch.observe("L", None, 0)
    assert watch.silent_for("L", 100) is None  # never saw the log: never silent
    watch.observe("L", "100", 10)
    watch.observe("L", "100", 500)
    assert watch.silent_for("L", 600) == 590 and watch.seen_at("L") == 500
    watch.observe("L", "180", 700)
    assert watch.silent_for("L", 760) == 60


# --------------------------------------------------------------------------- how it reads


def test_an_update_shows_epoch_loss_validation_time_eta_checkpoint_and_where_it_came_from():
    now = time.time()
    p = read_progress(pytorch_today(3, 10), STANDIN_LOG)
    launch = launch_record(state=LaunchState.RUNNING, state_since=now - 300)
    message = render(StatusUpdate(launch, ("last line",), now, p))
    assert_message_ok(message)
    text = json.dumps(message)
    assert "epoch 3/10" in text and "train_loss 0.25" in text and "val_loss 0.7" in text
    assert "1 min per epoch" in text and "ETA 7 min" in text and "dino_model_epoch_002.pth" in text
    assert "progress from TAO's status file and the log" in text
    # no ETA written: estimated from how long it has run (5 min for 2 of 3 epochs)
    log_only = read_progress((), STANDIN_LOG)
    text = json.dumps(render(StatusUpdate(launch, (), now, log_only)), ensure_ascii=False)
    assert "ETA ≈2 min (estimated)" in text and "progress from the log" in text


def test_stuck_signals_read_in_words():
    now = time.time()
    pending = launch_record(state=LaunchState.PENDING, native="PENDING", reason="Resources", state_since=now - 2000)
    text = json.dumps(render(StatusUpdate(pending, (), now, None, (Stuck("pending", 2000, 1800, "Resources"),))))
    assert "Pending for 33 min" in text and "longer than 30 min" in text and "`Resources`" in text
    assert "the nodes it needs are busy" in text
    running = launch_record(state=LaunchState.RUNNING)
    text = json.dumps(render(StatusUpdate(running, (), now, None, (Stuck("silent", 1560, 1500),))))
    assert "No output for 26 min" in text
    notice = silence_notice(running, 1560, StuckRules())
    assert notice.startswith("<@U_OWNER>") and "no output for 26 min" in notice and running.job_id in notice


def test_a_final_reply_gives_final_loss_each_epochs_validation_and_the_paths():
    now = time.time()
    p = read_progress(pytorch_today(4, 4), STANDIN_LOG)
    done = launch_record(state=LaunchState.SUCCEEDED, ended_at=now, exit_code=0)
    message = render(FinalUpdate(done, (), None, now, progress=p))
    assert_message_ok(message)
    text = json.dumps(message)
    assert "4/4 epochs" in text and "final train_loss 0.2" in text
    for e in p.epochs:
        assert f"epoch {e.epoch}: val_loss {metric(dict(e.validation)['val_loss'])}" in text
    assert "*Checkpoint:* `/r/train/dino_model_epoch_002.pth`" in text and done.results_location in text


def test_a_long_run_with_many_metrics_keeps_the_final_reply_inside_slacks_limits():
    now = time.time()
    names = {f"val_{'very_long_metric_name_' * 4}{i}": 0.123456789 for i in range(12)}
    lines = [rec(epoch=e, max_epoch=500, kpi={"train_loss": 1 / e, **names}) for e in range(1, 501)]
    p = read_progress(lines, [f"saving model to '/{'x' * 3000}.pth'"])
    done = launch_record(state=LaunchState.SUCCEEDED, ended_at=now, exit_code=0)
    message = render(FinalUpdate(done, tuple("log " * 200 for _ in range(20)), None, now, progress=p))
    assert_message_ok(message)
    text = json.dumps(message)
    assert "epoch 500:" in text and "epoch 1:" in text and "more" in text  # first, last and how many left out
    assert_message_ok(render(StatusUpdate(done.with_changes(state=LaunchState.RUNNING, ended_at=None), (), now, p)))


# --------------------------------------------------------------------------- log-only platforms


def test_lepton_progress_comes_from_its_log_in_the_same_log_read():
    from tests.fakes.lepton_api import FakeLeptonAPI
    from tests.test_backend_lepton_brev import LEP_TOKEN, WS, launch_jobs

    with FakeLeptonAPI(WS, LEP_TOKEN) as lep:
        backend, (ref,) = launch_jobs(lep, 1)
        lep.set_job_state(ref.job_id, "Running")
        noise = [f"step {i} lr=0.0001" for i in range(120)]  # far more than the lines an update shows
        lep.add_job_logs(ref.job_id, STANDIN_LOG[:3] + noise)
        lep.reset_calls()
        status = backend.poll([ref], tails_for=[ref.job_id])[ref.job_id]
        assert [c.path.rsplit("/", 1)[-1] for c in lep.calls] == ["jobs", "logs"]  # one log read, as before
        assert status.log_tail == tuple(noise[-TAIL_LINES:])
        p = status.progress
        assert p.source == FROM_LOG and (p.done, p.total, p.train_loss) == (1, 3, 0.5)
        assert p.checkpoint == "/r/train/dino_model_epoch_001.pth"
        moved = status.log_mark
        lep.add_job_logs(ref.job_id, ["[dino] epoch 2/3 loss=0.3333"])
        again = backend.poll([ref], tails_for=[ref.job_id])[ref.job_id]
        assert again.log_mark != moved and again.progress.done == 2
        assert backend.poll([ref])[ref.job_id].progress is None  # no log read, no progress claimed
