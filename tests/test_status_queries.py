"""`/tao status` answers in the slash command's ack: it reads only the intakes it shows (and their newest
launches) and counts the rest, in a real SQLite store."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

from taobot.intake import start_intake
from taobot.secrets import SecretBox, load_or_create_key
from taobot.services.status import SHOWN, StatusQueries
from taobot.store import Store
from tests.builders import CATALOG, launch_record


def test_a_long_channel_shows_its_newest_intakes_with_their_newest_launch_and_counts_the_rest(tmp_path):
    store = Store(tmp_path / "taobot.db", SecretBox(load_or_create_key(None, tmp_path / "taobot.db.key")))
    now = time.time()
    states = []
    for i in range(SHOWN + 5):
        state = start_intake(CATALOG, "dino", "train", owner="U0OWNER01", channel="C0LONG", thread_ts=f"{i}.000")
        state.updated_at = now + i  # the newest last
        store.save_intake(state, "U0OWNER01", "start")
        states.append(state)
    other = start_intake(CATALOG, "dino", "train", owner="U0OWNER01", channel="C0ELSE", thread_ts="1.000")
    store.save_intake(other, "U0OWNER01", "start")
    newest = states[-1]
    for n, at in ((1, now), (2, now + 60)):  # two launches of the newest intake: the later one is shown
        record = launch_record(id=f"{newest.id}-0000{n}", intake_id=newest.id, channel="C0LONG", launched_at=at)
        store.add_launch(record, store.get_intake(newest.id), "U0OWNER01")

    view = StatusQueries(SimpleNamespace(store=store, catalog=CATALOG, admins=frozenset())).channel("C0LONG")

    assert view.total == SHOWN + 5
    assert [e.intake.id for e in view.entries] == [s.id for s in reversed(states)][:SHOWN]
    assert view.entries[0].launch.id == f"{newest.id}-00002"
    assert all(e.launch is None for e in view.entries[1:])
    assert other.id not in {e.intake.id for e in view.entries}
    assert store.count_intakes(owner="U0OWNER01") == SHOWN + 6


def test_a_status_read_does_not_wait_behind_an_open_write_and_sees_only_what_was_committed(tmp_path):
    store = Store(tmp_path / "taobot.db", SecretBox(load_or_create_key(None, tmp_path / "taobot.db.key")))
    committed = start_intake(CATALOG, "dino", "train", owner="U0OWNER01", channel="C0BUSY", thread_ts="1.000")
    store.save_intake(committed, "U0OWNER01", "start")
    read_done, order = threading.Event(), []

    def writer() -> None:
        pending = start_intake(CATALOG, "dino", "train", owner="U0OWNER01", channel="C0BUSY", thread_ts="2.000")
        with store.transaction() as db:
            db["intakes"].insert({"id": pending.id, "channel": "C0BUSY", "owner": "U0OWNER01", "version": 1,
                                  "state": pending.model_dump_json(), "updated_at": time.time()})  # fmt: skip
            writing.set()
            read_done.wait(30)  # held open until the read is back (or, were reads blocked, gives up after 30 s)
            order.append("write committed")

    writing = threading.Event()
    thread = threading.Thread(target=writer)
    thread.start()
    assert writing.wait(30)
    seen = [s.id for s in store.intakes_in_channel("C0BUSY", 40)]
    counted = store.count_intakes(channel="C0BUSY")
    order.append("read")
    read_done.set()
    thread.join(60)
    assert order == ["read", "write committed"]
    assert seen == [committed.id] and counted == 1
    assert store.count_intakes(channel="C0BUSY") == 2
