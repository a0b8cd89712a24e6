"""Two writers on one database never lose each other's answers: intake writes are compare-and-swap.

Two Store objects on one SQLite file are two connections, as two taobot
instances (or the bot and the CLI) have; nothing here is simulated.
"""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from taobot.catalog import load_catalog
from taobot.errors import IntakeConflict
from taobot.intake import ChoosePlatform, SetMonitoring, apply_all, start_intake
from taobot.launches import JobState
from taobot.secrets import SecretBox
from taobot.services import Services
from taobot.store import Store
from tests.builders import launch_record

CATALOG = load_catalog()


@pytest.fixture
def two_instances(tmp_path):
    key = Fernet.generate_key()
    first, second = (Store(tmp_path / "taobot.db", SecretBox(key)) for _ in range(2))
    yield first, second
    first.close()
    second.close()


def saved_intake(store):
    state = start_intake(CATALOG, "dino", "train", "U_OWNER", "C_CHAN", "1700000000.000100")
    store.save_intake(state, "U_OWNER", "start")
    return state


def test_a_write_from_a_stale_read_is_refused_and_the_other_answer_is_kept(two_instances):
    first, second = two_instances
    state = saved_intake(first)
    mine, theirs = first.get_intake(state.id), second.get_intake(state.id)
    assert mine.version == theirs.version == 1
    first.save_intake(apply_all(mine, [ChoosePlatform("slurm")], CATALOG).state, "U_OWNER", "reply")
    stale = apply_all(theirs, [SetMonitoring(False)], CATALOG).state
    with pytest.raises(IntakeConflict):
        second.save_intake(stale, "U_OWNER", "reply")
    now = second.get_intake(state.id)
    assert now.platform == "slurm" and now.monitor is None and now.version == 2
    assert [e["kind"] for e in second.events_for(state.id)] == ["start", "reply"]  # the refused write logged nothing
    # Read again and redo: both answers are kept.
    second.save_intake(apply_all(now, [SetMonitoring(False)], CATALOG).state, "U_OWNER", "reply")
    final = first.get_intake(state.id)
    assert final.platform == "slurm" and final.monitor is False and final.version == 3


def test_a_launch_recorded_from_a_stale_read_is_refused_and_nothing_is_recorded(two_instances):
    first, second = two_instances
    state = saved_intake(first)
    stale = second.get_intake(state.id)
    first.save_intake(apply_all(first.get_intake(state.id), [ChoosePlatform("slurm")], CATALOG).state, "U", "reply")
    stale.status = "launched"
    with pytest.raises(IntakeConflict):
        second.add_launch(launch_record(intake_id=state.id, state=JobState.SUBMITTING), stale, "U_OWNER")
    assert first.launches_for_intake(state.id) == [] and first.get_intake(state.id).status == "collecting"
    fresh = second.get_intake(state.id)
    fresh.status = "launched"
    second.add_launch(launch_record(intake_id=state.id, state=JobState.SUBMITTING), fresh, "U_OWNER")
    assert first.get_intake(state.id).version == fresh.version == 3 and len(first.launches_for_intake(state.id)) == 1


def test_a_prefix_search_takes_wildcards_literally(two_instances):
    first, _ = two_instances
    state = saved_intake(first)
    first.add_launch(launch_record(id=f"{state.id}-00001", intake_id=state.id), first.get_intake(state.id), "U")
    assert [s.id for s in first.find_intake_by_prefix(state.id[:3])] == [state.id]
    assert first.find_intake_by_prefix("%") == [] and first.find_intake_by_prefix("_") == []
    assert first.find_launch_by_prefix("%") is None and first.find_launch_by_prefix("____") is None
    assert first.find_launch_by_prefix(state.id).id == f"{state.id}-00001"


class RecordingSlack:
    """Stands in for the Slack Web API where the race needs a hook; the stores are real."""

    def __init__(self, on_first_post=None) -> None:
        self.posts, self.on_first_post = [], on_first_post

    def post(self, channel, view, thread_ts=None, metadata=None):
        self.posts.append((channel, view, thread_ts))
        if self.on_first_post:
            hook, self.on_first_post = self.on_first_post, None
            hook()
        return f"1700000001.{len(self.posts):06d}"

    def update(self, channel, ts, view):
        pass

    def ephemeral(self, channel, user, text, thread_ts=None):
        self.posts.append((channel, text, thread_ts))

    def find_posted(self, *args):
        return None


def test_a_click_on_another_instance_while_the_card_is_posted_is_kept(two_instances):
    first, second = two_instances

    def other_instance_answers():
        state = second.find_intake_by_prefix("")[0]
        second.save_intake(apply_all(state, [ChoosePlatform("local-docker")], CATALOG).state, "U_OWNER", "platform")

    slack = RecordingSlack(on_first_post=other_instance_answers)
    services = Services(first, CATALOG, slack)
    try:
        state = services.start("C_CHAN", "U_OWNER", "dino", "train")
        stored = first.get_intake(state.id)
        assert stored.platform == "local-docker" and stored.card_ts == state.card_ts == "1700000001.000001"
        assert [e["kind"] for e in first.events_for(state.id)] == ["start", "platform", "card_posted"]
    finally:
        services.shutdown(1)


def test_services_redo_an_answer_whose_read_went_stale(two_instances):
    first, second = two_instances
    slack = RecordingSlack()
    services = Services(first, CATALOG, slack)
    try:
        state = saved_intake(first)
        stale = first.get_intake(state.id)
        second.save_intake(apply_all(second.get_intake(state.id), [ChoosePlatform("slurm")], CATALOG).state, "U", "x")
        services._retrying(
            stale, lambda s: services.intake.answer(s, "U_OWNER", [SetMonitoring(True, 10)], "monitoring")
        )
        final = second.get_intake(state.id)
        assert final.platform == "slurm" and final.monitor is True and final.interval_minutes == 10
    finally:
        services.shutdown(1)
