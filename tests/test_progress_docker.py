"""Training progress of real containers on a real Docker daemon (the private dockerd of test_backend_docker).

The stand-in image's entrypoint (tests/images/standin/tao-standin) writes one TAO-shaped status record per
epoch into the bot-host results folder and saves a checkpoint per epoch, as the lab's SLURM stand-in does.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from taobot.backends.base import JobState
from taobot.launches import JobState as LaunchState
from taobot.progress import FROM_BOTH, FROM_FILE
from taobot.slack.render import render
from taobot.view_text import metric
from taobot.views import FinalUpdate
from tests.builders import launch_record
from tests.test_backend_docker import (  # noqa: F401 - backend, private and private_host are fixtures
    backend,
    make_spec,
    private,
    private_host,
    ref_of,
    wait_state,
)
from tests.test_blocks import assert_message_ok


def records_of(launch_dir: Path) -> dict[int, dict]:
    lines = (launch_dir / "results" / "status.json").read_text().splitlines()
    return {r["epoch"]: r for r in map(json.loads, lines) if "epoch" in r}


def test_a_running_container_reports_each_epoch_as_written_and_its_log_mark_moves(backend, private):
    host, image = private
    spec = make_spec(host, image, spec={"standin_sleep": 2, "standin_epochs": 3})
    sub = backend.launch(spec)
    ref = ref_of(spec, sub)
    launch_dir = Path(sub.details["launch_dir"])
    seen: dict[int, object] = {}
    marks = []
    deadline = time.monotonic() + 60
    while True:
        status = backend.poll([ref], tails_for=[ref.job_id])[ref.job_id]
        if status.state is JobState.RUNNING and status.log_mark:
            marks.append(status.log_mark)
        if status.progress is not None and status.progress.done:
            seen[status.progress.done] = status.progress
        if status.state.terminal:
            break
        assert time.monotonic() < deadline, status
        time.sleep(0.5)
    assert status.state is JobState.SUCCEEDED, status
    records = records_of(launch_dir)
    assert sorted(records) == [1, 2, 3]
    for n, progress in seen.items():  # every progress read matches the record of that epoch
        kpi = records[n]["kpi"]
        assert (progress.total, progress.train_loss) == (3, float(kpi["train_loss"]))
        assert dict(progress.validation) == {
            "val_loss": float(kpi["val_loss"]),
            "val_accuracy": float(kpi["val_accuracy"]),
        }
    assert len(seen) >= 2 and len(set(marks)) >= 2  # it moved while it ran, and the mark moved with the log

    final = status.progress
    assert final.source == FROM_BOTH and (final.done, final.total, final.final) == (3, 3, "SUCCESS")
    # The log names the checkpoint inside the container; the progress names it where it is on the bot host.
    checkpoint = launch_dir / "results" / "train" / "dino_model_epoch_003.pth"
    assert final.checkpoint == str(checkpoint) and checkpoint.is_file()
    assert [e.epoch for e in final.epochs] == [1, 2, 3]

    now = time.time()
    done = launch_record(
        platform="local-docker",
        job_id=sub.job_id,
        state=LaunchState.SUCCEEDED,
        exit_code=0,
        ended_at=now,
        results_location=sub.results_location,
        log_location=sub.log_location,
    )
    message = render(FinalUpdate(done, status.log_tail, None, now, progress=final))
    assert_message_ok(message)
    text = json.dumps(message)
    assert f"final train_loss {metric(records[3]['kpi']['train_loss'])}" in text and "3/3 epochs" in text
    for n, record in records.items():
        assert f"epoch {n}: val_loss {metric(record['kpi']['val_loss'])}" in text
    assert str(checkpoint) in text and sub.results_location in text


def test_a_container_removed_on_exit_still_has_its_progress_from_the_status_file(backend, private):
    host, image = private
    spec = make_spec(host, image, creds={"DOCKER_AUTO_REMOVE": "true"}, spec={"standin_epochs": 2})
    sub = backend.launch(spec)
    ref = ref_of(spec, sub)
    status = wait_state(backend, ref, {JobState.SUCCEEDED, JobState.FAILED}, tails=True)
    assert status.state is JobState.SUCCEEDED and status.native == "removed", status
    assert status.progress.source == FROM_FILE and (status.progress.done, status.progress.total) == (2, 2)
    assert status.progress.train_loss == float(records_of(Path(sub.details["launch_dir"]))[2]["kpi"]["train_loss"])
