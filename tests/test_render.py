"""Launch messages rendered from typed Launch records, and redaction at the one edge that sends to Slack."""

from __future__ import annotations

import calendar
import time

import pytest

from taobot import views as V
from taobot.launches import TERMINAL, JobState, terminal_sql_list
from taobot.secrets import REDACTED, REDACTOR
from taobot.slack import blocks as B
from taobot.slack.app import SlackMessenger, redacted
from taobot.slack.render import RENDERERS, render
from tests.builders import launch_record
from tests.fakes._blocks import validate_message_blocks
from tests.test_blocks import assert_message_ok

NOW = time.time()


def test_every_view_type_has_a_renderer():
    assert set(RENDERERS) == set(V.View.__args__)


@pytest.mark.parametrize("state", list(JobState))
def test_status_update_and_final_reply_are_valid_for_every_state(state):
    launch = launch_record(state=state, native=state.value.upper(), reason="Resources", exit_code=3)
    lines = tuple(f"epoch {i} loss 0.{i:03d} ```fence```" for i in range(400))
    for view in (
        V.StatusUpdate(launch, lines, NOW),
        V.FinalUpdate(launch, lines, "NCCL error", NOW),
        V.LaunchPosted(launch),
        V.LaunchDetail(launch, NOW),
    ):
        message = render(view)
        assert_message_ok(message)
        assert validate_message_blocks(message["blocks"]) == []
        assert state.value in message["text"] or isinstance(view, V.LaunchPosted)


def test_final_reply_says_retriable_only_with_a_cause_and_offers_relaunch():
    failed = launch_record(state=JobState.FAILED, native="FAILED", exit_code=1)
    with_cause = render(V.FinalUpdate(failed, (), "NCCL error", NOW))
    without = render(V.FinalUpdate(failed, (), None, NOW))
    assert "likely retriable" in str(with_cause) and "likely retriable" not in str(without)
    assert B.RELAUNCH in str(with_cause["blocks"][-1])
    assert "Exit code: 1" in str(without)


def test_an_ended_launch_says_how_long_it_ran_and_when_it_ended_not_for_0_s():
    from taobot.view_text import status_line

    ended = calendar.timegm((2026, 12, 1, 14, 3, 0))
    done = launch_record(
        state=JobState.SUCCEEDED, native="COMPLETED", launched_at=ended - 720, state_since=ended, ended_at=ended
    )
    line = status_line(done, ended + 5)
    assert "*Succeeded* after 12 min (ended 14:03 UTC)" in line and "for 0 s" not in line, line
    assert "(ended 2026-12-01 14:03 UTC)" in status_line(done, ended + 2 * 86400)  # another day: the date too
    card = str(render(V.LaunchDetail(done, ended + 3600)))
    assert "after 12 min (ended 14:03 UTC)" in card and " for " not in card.split("Job id")[0]
    final = str(render(V.FinalUpdate(done, (), None, ended + 5)))
    assert "after 12 min (ended 14:03 UTC)" in final
    running = launch_record(state=JobState.RUNNING, native="RUNNING", state_since=NOW - 300)
    assert "*Running* for 5 min" in status_line(running, NOW)


def test_a_signal_is_no_exit_code_and_pending_reasons_that_mean_never_say_so():
    from taobot.view_text import never_starts, status_line

    cancelled = launch_record(
        state=JobState.CANCELLED, native="CANCELLED by 1001", reason="ended by signal 15 (SIGTERM)", ended_at=NOW
    )
    text = str(render(V.FinalUpdate(cancelled, (), None, NOW)))
    assert "Exit code" not in text and "Reason: ended by signal 15 (SIGTERM)" in text
    for reason in (
        "PartitionConfig",
        "PartitionNodeLimit",
        "PartitionTimeLimit",
        "QOSMaxCpuPerJobLimit",
        "PartitionDown",
    ):
        pending = launch_record(state=JobState.PENDING, native="PENDING", reason=reason)
        line = status_line(pending, NOW)
        assert f"will never start: {reason}" in line and "waiting" not in line, line
        assert "will never start as asked" in str(render(V.StatusUpdate(pending, (), NOW)))
    for reason in ("Resources", "Priority", "JobHeldUser", "BeginTime", "QOSMaxJobsPerUserLimit"):
        assert never_starts(reason) is None, reason
        pending = launch_record(state=JobState.PENDING, native="PENDING", reason=reason)
        assert status_line(pending, NOW).endswith(f"waiting: {reason}")
        assert "never start" not in str(render(V.StatusUpdate(pending, (), NOW)))
    assert "SLURM_TIME_HOURS" in never_starts("PartitionTimeLimit")


def test_updates_are_off_or_detached_in_the_detail():
    assert "Updates: off" in render(V.LaunchDetail(launch_record(monitor=False), NOW))["text"]
    assert "Updates: detached" in render(V.LaunchDetail(launch_record(detached=True), NOW))["text"]
    assert "every 5 min" in render(V.LaunchDetail(launch_record(), NOW))["text"]


def test_one_definition_of_terminal():
    assert {s for s in JobState if s.terminal} == TERMINAL == {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED}
    assert not JobState.UNKNOWN.terminal and not JobState.UNKNOWN.active
    assert {s for s in JobState if s.active} == {
        JobState.SUBMITTING,
        JobState.PENDING,
        JobState.RUNNING,
        JobState.PAUSED,
    }
    assert terminal_sql_list() == "'Cancelled', 'Failed', 'Succeeded'"


def test_redaction_reaches_every_string_of_the_blocks_and_only_secrets():
    secret = "hf_RenderEdgeSecretValue0123456789abcd"
    REDACTOR.add(secret)
    launch = launch_record(reason=f"token {secret} refused", log_location="/home/jdoe/logs/x.out")
    message = redacted(render(V.StatusUpdate(launch, (f"HF_TOKEN={secret}", "plain line"), NOW)))
    text = str(message)
    assert secret not in text and REDACTED in text
    assert "/home/jdoe/logs/x.out" in text and "plain line" in text  # what is not secret stays readable


class RecordingClient:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    def api_call(self, method: str, json: dict):
        self.calls.append((method, json))
        return type("R", (), {"data": {"ok": True, "ts": "1.0"}})()


def test_the_slack_messenger_renders_views_and_redacts_before_sending():
    secret = "nvapi-MessengerEdgeSecret0123456789abcdef"
    REDACTOR.add(secret)
    client = RecordingClient()
    messenger = SlackMessenger(client)
    messenger.post("C1", V.Reply(f"key {secret} pasted"), thread_ts="1.0")
    messenger.update("C1", "1.0", V.LaunchDetail(launch_record(state=JobState.PENDING, reason=secret), NOW))
    assert [m for m, _ in client.calls] == ["chat.postMessage", "chat.update"]
    for _method, body in client.calls:
        assert secret not in str(body) and REDACTED in str(body)
        assert body["blocks"]


def test_the_final_reply_mentions_the_owner_and_no_update_does():
    launch = launch_record(state=JobState.SUCCEEDED, native="COMPLETED", exit_code=0, ended_at=NOW)
    assert "<@U_OWNER>" in str(render(V.FinalUpdate(launch, (), None, NOW)))
    assert "<@U_OWNER>" not in str(render(V.StatusUpdate(launch_record(), (), NOW)))
