"""Status queries: what is running in a channel, and one launch or intake in detail."""

from __future__ import annotations

import time

from taobot.catalog import find_platform
from taobot.services.desk import Desk
from taobot.views import ChannelEntry, ChannelStatus, IntakeDetail, LaunchDetail, Reply, View, intake_facts

CHANNEL_LIMIT = 500  # rows read for one channel's status
SHOWN = 40  # lines shown; the rest are counted


class StatusQueries:
    def __init__(self, desk: Desk) -> None:
        self.desk = desk

    def channel(self, channel: str) -> ChannelStatus:
        store, catalog = self.desk.store, self.desk.catalog
        latest: dict = {}
        for launch in store.launches_in_channel(channel, limit=CHANNEL_LIMIT):
            latest.setdefault(launch.intake_id, launch)
        intakes = store.intakes_in_channel(channel, limit=CHANNEL_LIMIT)
        entries = tuple(
            ChannelEntry(s, find_platform(catalog, s.platform).display_name if s.platform else "—", latest.get(s.id))
            for s in intakes[:SHOWN]
        )
        return ChannelStatus(entries, len(intakes), time.time())

    def one(self, wanted: str) -> View:
        store = self.desk.store
        wanted = wanted.strip()
        launch = store.find_launch_by_prefix(wanted)
        if launch is None and "-" not in wanted:
            launch = store.latest_launch(wanted)
        if launch is not None:
            return LaunchDetail(launch, time.time())
        matches = store.find_intake_by_prefix(wanted)
        if not matches:
            return Reply(f"No launch `{wanted}` is known. `/tao status` lists this channel's launches.")
        return IntakeDetail(intake_facts(matches[0], self.desk.catalog), time.time())
