"""Status queries: what is running in a channel, and one launch or intake in detail."""

from __future__ import annotations

import time

from taobot.catalog import find_platform
from taobot.services.desk import Desk
from taobot.views import ChannelEntry, ChannelStatus, HomeView, IntakeDetail, LaunchDetail, Reply, View, intake_facts

CHANNEL_LIMIT = 500  # rows read for one channel's status
SHOWN = 40  # lines shown; the rest are counted


def is_direct_message(channel: str) -> bool:
    """Slack's DM conversation ids start with D: there, status means the person's own launches."""
    return channel.startswith("D")


class StatusQueries:
    """What a person may see: the launches of the channel they ask in; in a DM, their own; an admin, all."""

    def __init__(self, desk: Desk) -> None:
        self.desk = desk

    def audit(self, user: str, channel: str | None, wanted: str | None = None) -> None:
        """The audit row of a status read. The slash command writes it after its ack (`audit=False` below):
        the answer itself needs no write."""
        self.desk.audit(user, "status", channel=channel, detail={"wanted": wanted[:80]} if wanted else None)

    def channel(self, channel: str, user: str | None = None, audit: bool = True) -> ChannelStatus:
        if user is not None and audit:
            self.audit(user, channel)
        store, catalog = self.desk.store, self.desk.catalog
        dm = is_direct_message(channel) and user is not None
        # Only the shown intakes are read (and their newest launches); the rest are counted. The answer goes out
        # in the slash command's ack, so it must not grow with the channel's history.
        intakes = store.intakes_of_owner(user, SHOWN) if dm else store.intakes_in_channel(channel, SHOWN)
        total = store.count_intakes(owner=user) if dm else store.count_intakes(channel=channel)
        latest = store.latest_launches([s.id for s in intakes])
        entries = tuple(
            ChannelEntry(s, find_platform(catalog, s.platform).display_name if s.platform else "—", latest.get(s.id))
            for s in intakes
        )
        return ChannelStatus(entries, max(total, len(intakes)), time.time(), yours=dm)

    def home(self, user: str) -> HomeView:
        """The person's own launches for their App Home: running jobs first, then open intakes, then the ended."""
        store, catalog = self.desk.store, self.desk.catalog
        latest: dict = {}
        for launch in store.launches_of_owner(user, CHANNEL_LIMIT):
            latest.setdefault(launch.intake_id, launch)
        intakes = store.intakes_of_owner(user, CHANNEL_LIMIT)

        def rank(state) -> int:
            launch = latest.get(state.id)
            if launch is not None and launch.state.active:
                return 0
            return 1 if state.status in ("collecting", "complete") else 2

        ordered = sorted(intakes, key=rank)  # sorted() is stable: newest first within each group
        entries = tuple(
            ChannelEntry(s, find_platform(catalog, s.platform).display_name if s.platform else "—", latest.get(s.id))
            for s in ordered[:SHOWN]
        )
        return HomeView(user, entries, len(intakes), time.time())

    def one(self, wanted: str, channel: str | None = None, user: str | None = None, audit: bool = True) -> View:
        """One launch or intake by id prefix, found only where the asker may look (None, None: the operator's CLI)."""
        if user is not None and audit:
            self.audit(user, channel, wanted)
        store = self.desk.store
        wanted = wanted.strip()
        scope: dict = {}
        if channel is not None and user not in self.desk.admins:
            scope = {"owner": user} if is_direct_message(channel) else {"channel": channel}
        launch = store.find_launch_by_prefix(wanted, **scope)
        if launch is None and "-" not in wanted:
            launch = store.latest_launch(wanted)
            if launch is not None and any(getattr(launch, k) != v for k, v in scope.items()):
                launch = None
        if launch is not None:
            return LaunchDetail(launch, time.time())
        matches = store.find_intake_by_prefix(wanted, **scope)
        if not matches:
            where = "your launches" if scope.get("owner") else "this channel" if scope else "the database"
            return Reply(f"No launch `{wanted}` is known in {where}. `/tao status` lists this channel's launches.")
        return IntakeDetail(intake_facts(matches[0], self.desk.catalog), time.time())
