"""Failure triage and Retry with real SLURM jobs, from Slack threads.

The jobs run the stand-in TAO entrypoints of the test cluster; how they fail rides on their dataset
(`standin.env`, tests/services): a Python traceback, an NCCL/InfiniBand error, or a node the test takes down
with `scontrol` while the job runs (SLURM then ends it NODE_FAIL). Each test reads the thread the fake
Slack holds: the final reply's triage, the Retry button, the new preflight card and the linked launch, each
message exactly once.
"""

from __future__ import annotations

import shlex
import sqlite3
import subprocess
import time

import pytest

from taobot.intake.intents import RETRY
from taobot.slack import blocks as B
from tests.harness import SlackUser, blocks_text
from tests.polling import wait_until
from tests.slurm_flow import (  # noqa: F401 - slurm_bot is a fixture
    LAB,
    complete_intake,
    launch,
    press_launch,
    scenario,
    slurm_bot,
    ssh,
    status_posts,
    wait_final,
)

pytestmark = pytest.mark.slurm  # the shared test cluster: see tests/conftest.py

NODE = LAB["TAOBOT_TEST_SLURM_NODE"]


def final_message(thread, launch_id: str) -> dict:
    (message,) = status_posts(thread, launch_id)[-1]  # exactly one final reply
    return message


def buttons(message: dict) -> list[str]:
    return [
        el.get("action_id") for b in message.get("blocks", []) if b.get("type") == "actions" for el in b["elements"]
    ]


def launched_ids(thread) -> list[str]:
    """Launch ids of the thread's "Launched" notices, in the order they were posted (a repeat would show twice)."""
    notices = [m.get("text", "") for m in thread.replies() if m.get("text", "").startswith("Launched ")]
    return [text.split()[1].rstrip(":") for text in notices]


def preflight_cards(thread) -> list[dict]:
    return [m for m in thread.replies() if m.get("text", "").startswith("Preflight ")]


def wait_launch_after(thread, earlier: list[str], timeout: float = 60) -> str:
    def new() -> str | None:
        fresh = [i for i in launched_ids(thread) if i not in earlier]
        return fresh[0] if fresh else None

    return wait_until(new, timeout, "a new launch in the thread", show=lambda: launched_ids(thread), every=1)


def count_replies(thread, needle: str) -> int:
    return sum(1 for m in thread.replies() if needle in blocks_text(m))


def scontrol(*args: str) -> None:
    subprocess.run(["scontrol", *args], check=True, capture_output=True, timeout=30)


def node_state() -> str:
    out = subprocess.run(["sinfo", "-h", "-n", NODE, "-o", "%t"], capture_output=True, text=True, timeout=30)
    return out.stdout.strip()


def job_state(job_id: str) -> str:
    return ssh(f"squeue -h -j {shlex.quote(job_id)} -o %T 2>/dev/null || true").strip()


def test_a_node_failure_gets_retry_which_preflights_again_and_launches_a_linked_job_that_completes(slurm_bot, slack):
    person = SlackUser(slurm_bot)
    root = scenario("nodefail", TAO_STANDIN_SLEEP="3", TAO_STANDIN_EPOCHS="60")
    thread, first = launch(person, root)
    store = slurm_bot.store()
    try:
        job = store.get_launch(first).job_id
        wait_until(lambda: job_state(job) == "RUNNING", 60, f"job {job} to run", show=lambda: job_state(job))
        try:
            scontrol("update", f"nodename={NODE}", "state=down", "reason=taobot-retry-test")
            final = wait_final(thread, first, 90)
        finally:
            # The cluster may have returned the node to service by itself already (ReturnToService): not an error.
            subprocess.run(["scontrol", "update", f"nodename={NODE}", "state=resume"], capture_output=True, timeout=30)
        assert "NODE_FAIL" in final and "*Failure triage: infrastructure* (node failure)" in final, final
        assert "Decided by: `platform state NODE_FAIL" in final and "likely retriable" in final
        assert buttons(final_message(thread, first)) == [RETRY, B.RELAUNCH]
        wait_until(lambda: node_state() in ("idle", "mix", "alloc"), 60, "the node back up", show=node_state)

        # The retry runs the same inputs; this scenario's data now makes a short, successful run.
        ssh(f"printf 'TAO_STANDIN_SLEEP=1\\nTAO_STANDIN_EPOCHS=2\\n' > {shlex.quote(root)}/standin.env")
        thread.press_on_reply(RETRY, "Failure triage: infrastructure")
        thread.wait_reply(f"asked for retry 1 of `{first}` (node failure)")
        second = wait_launch_after(thread, [first])
        assert store.get_launch(second).retry_of == first
        assert f"A retry of `{first}`, with the same inputs." in thread.wait_reply(f"Launched `{second}`")
        done = wait_final(thread, second, 90)
        assert "Succeeded" in done and "Failure triage" not in done

        # Once more on the first failure: it was retried already; nothing new.
        thread.press_on_reply(RETRY, "Failure triage: infrastructure")
        thread.wait_reply(f"Not retrying `{first}`: it was retried already, as `{second}`")
        time.sleep(4)
        assert [x.id for x in store.launches_for_intake(thread.intake_id)] == [second, first]
        assert count_replies(thread, "asked for retry 1") == 1 and launched_ids(thread) == [first, second]
        assert all(len(v) == 1 for v in status_posts(thread, first).values())
        assert all(len(v) == 1 for v in status_posts(thread, second).values())
        # The retry's preflight is its own card, posted once, and it passed.
        cards = preflight_cards(thread)
        assert len(cards) == 2 and "Preflight passed for launch" in blocks_text(cards[-1])
    finally:
        store.close()


@pytest.mark.slurm_lane(3)  # only its own jobs: it may run beside the other lanes
def test_a_traceback_gets_no_retry_and_shows_its_frames_and_a_spec_error_is_configuration(slurm_bot, slack):
    person = SlackUser(slurm_bot)
    program_t, program = launch(
        person, scenario("tb", TAO_STANDIN_SLEEP="1", TAO_STANDIN_EPOCHS="1", TAO_STANDIN_FAILURE="traceback")
    )
    spec_t, spec = launch(person, scenario("spec", TAO_STANDIN_FAILURE="spec"))

    final = wait_final(program_t, program, 90)
    assert "*Failure triage: program* (Python exception)" in final
    assert "Decided by: `KeyError: 'loss_bbox_enc'`" in final
    assert "Last frames of the traceback" in final and 'criterion.py", line 97, in forward' in final
    assert "return sum(weights[k] * losses[k] for k in losses)" in final
    frames = final.split("Last frames of the traceback", 1)[1].split("```")[1]
    assert frames.count('File "') == 3 and frames.index("line 139, in main") < frames.index("line 97, in forward")
    assert buttons(final_message(program_t, program)) == [B.RELAUNCH]  # no Retry

    spec_final = wait_final(spec_t, spec, 90)
    assert "*Failure triage: configuration* (spec error)" in spec_final
    assert "omegaconf.errors.ConfigKeyError: Key 'batchsize' not in 'DatasetConfig'" in spec_final
    assert buttons(final_message(spec_t, spec)) == [B.RELAUNCH]

    # Asking anyway (the reply word) is refused, and says why; nothing is created.
    program_t.say("retry")
    program_t.wait_reply(f"Not retrying `{program}`: only infrastructure failures are retried, and it was a program")
    time.sleep(3)
    assert launched_ids(program_t) == [program]
    assert not preflight_cards(program_t)[1:]


@pytest.mark.slurm_lane(3)  # only its own jobs: it may run beside the other lanes
def test_retry_infra_1_retries_an_infrastructure_failure_by_itself_once_then_stops(slurm_bot, slack):
    person = SlackUser(slurm_bot)
    root = scenario("auto", TAO_STANDIN_SLEEP="1", TAO_STANDIN_EPOCHS="1", TAO_STANDIN_FAILURE="nccl")
    thread = complete_intake(person, root)
    thread.say("retry=infra:1")
    thread.wait_card("*Retry:* an infrastructure failure retries by itself, up to 1 time")
    thread.press(B.RUN_PREFLIGHT)
    thread.wait_card("Preflight passed.", timeout=30)
    first = press_launch(thread)

    final = wait_final(thread, first, 90)
    assert "*Failure triage: infrastructure* (InfiniBand)" in final and "NCCL WARN NET/IB" in final
    assert "Retrying automatically (1 of 1)" in final
    assert buttons(final_message(thread, first)) == [B.RELAUNCH]  # the retry is already going
    thread.wait_reply(f"Automatic retry 1 of 1 of `{first}` (InfiniBand)")
    second = wait_launch_after(thread, [first])
    store = slurm_bot.store()
    try:
        assert store.get_launch(second).retry_of == first
        again = wait_final(thread, second, 90)
        assert "Automatic retries used up (1 of 1)" in again and "retry 1 of its chain" in again
        assert buttons(final_message(thread, second)) == [RETRY, B.RELAUNCH]  # a person may still press it
        time.sleep(8)  # a few monitor cycles: no third launch, no third preflight
        assert launched_ids(thread) == [first, second]
        assert len(store.launches_for_intake(thread.intake_id)) == 2
        assert count_replies(thread, "Automatic retry 1 of 1") == 1
        assert len(preflight_cards(thread)) == 2
    finally:
        store.close()


@pytest.mark.slurm_lane(3)  # only its own jobs: it may run beside the other lanes
def test_a_chain_of_ten_refuses_the_eleventh_and_a_failed_preflight_launches_nothing(slurm_bot, slack):
    person = SlackUser(slurm_bot)
    root = scenario("chain", TAO_STANDIN_SLEEP="1", TAO_STANDIN_EPOCHS="1", TAO_STANDIN_FAILURE="nccl")
    thread, tenth = launch(person, root)
    wait_final(thread, tenth, 90)
    assert buttons(final_message(thread, tenth)) == [RETRY, B.RELAUNCH]

    # Nine earlier launches of its chain, as a chain that got this far leaves them in the database.
    db = sqlite3.connect(slurm_bot.db)
    row = db.execute("SELECT * FROM launches WHERE id = ?", [tenth]).fetchone()
    names = [d[1] for d in db.execute("PRAGMA table_info(launches)")]
    earlier = [f"{tenth}-r{i}" for i in range(1, 10)]
    for i, launch_id in enumerate(earlier):
        copy = dict(zip(names, row, strict=True))
        copy.update(id=launch_id, job_id=f"9000{i}", retry_of=earlier[i - 1] if i else None, cleaned_at=time.time())
        db.execute(
            f"INSERT INTO launches ({', '.join(copy)}) VALUES ({', '.join('?' * len(copy))})", list(copy.values())
        )
    db.execute("UPDATE launches SET retry_of = ? WHERE id = ?", [earlier[-1], tenth])
    db.commit()
    jobs_before = ssh("squeue -h -u $USER -o %j | grep -c '^tao-' || true").strip()

    thread.press_on_reply(RETRY, "Failure triage: infrastructure")
    thread.wait_reply(f"Not retrying `{tenth}`: its retry chain has 10 launches already, the most taobot runs (10)")
    time.sleep(4)
    assert launched_ids(thread) == [tenth]
    assert len(preflight_cards(thread)) == 1
    assert ssh("squeue -h -u $USER -o %j | grep -c '^tao-' || true").strip() == jobs_before
    refused = db.execute("SELECT allowed, reason FROM audit WHERE action = 'retry' ORDER BY id DESC").fetchone()
    assert refused[0] == 0 and "10 launches already" in refused[1]

    # A shorter chain may retry, but only through a preflight: with the dataset gone it fails, nothing launches.
    db.execute("UPDATE launches SET retry_of = NULL WHERE id = ?", [tenth])
    db.commit()
    db.close()
    ssh(f"mv {shlex.quote(root)} {shlex.quote(root)}.gone")
    thread.press_on_reply(RETRY, "Failure triage: infrastructure")
    thread.wait_reply(f"asked for retry 1 of `{tenth}`")
    thread.wait_reply(f"Retry of `{tenth}` stopped: its preflight failed; the card above says what to fix", timeout=60)
    cards = preflight_cards(thread)
    assert len(cards) == 2 and "check(s) failed" in cards[-1].get("text", "")
    time.sleep(4)
    assert launched_ids(thread) == [tenth]
    assert ssh("squeue -h -u $USER -o %j | grep -c '^tao-' || true").strip() == jobs_before


def test_sbatch_refusing_the_job_is_a_configuration_failure_with_its_line_and_no_retry(slurm_bot, slack):
    """The partition preflight checked is gone when the job is submitted: sbatch refuses, nothing is queued."""
    import uuid

    partition = f"gone{uuid.uuid4().hex[:6]}"
    scontrol("create", f"PartitionName={partition}", f"Nodes={NODE}", "MaxTime=04:00:00", "State=UP")
    try:
        person = SlackUser(slurm_bot)
        thread = complete_intake(person, scenario("refused"), partition=partition)
        thread.press(B.RUN_PREFLIGHT)
        thread.wait_card("Preflight passed.", timeout=30)
        scontrol("delete", f"PartitionName={partition}")
        thread.press(B.LAUNCH)
        text = thread.wait_reply("Failure triage: configuration", timeout=60)
        assert "SLURM refused the job" in text and "(partition unknown)" in text and "Nothing is running." in text
        assert "Decided by: `sbatch refused the job:" in text and "Invalid partition name specified" in text
        assert "set SLURM_PARTITION to one of the partitions `sinfo -s` lists" in text
        (message,) = [m for m in thread.replies() if "submit failed" in m.get("text", "")]
        assert buttons(message) == []
        store = slurm_bot.store()
        try:
            (launch,) = store.launches_for_intake(thread.intake_id)
            assert (launch.native, launch.failure_kind, launch.failure_cause) == (
                "submit failed",
                "configuration",
                "partition unknown",
            )
            assert launch.job_id is None and store.get_intake(thread.intake_id).status == "complete"
        finally:
            store.close()
        assert ssh("squeue -h -u $USER -o %j | grep '^tao-' || true").strip() == ""
    finally:
        subprocess.run(["scontrol", "delete", f"PartitionName={partition}"], capture_output=True, timeout=30)
