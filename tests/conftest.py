from __future__ import annotations

import pytest

from tests.fakes import FakeSlackAPI
from tests.harness import BOT_TOKEN, BotProcess, SlackUser


@pytest.fixture
def slack():
    with FakeSlackAPI(token=BOT_TOKEN, trigger_ttl=None) as fake:
        yield fake


@pytest.fixture
def bot(tmp_path, slack):
    process = BotProcess(tmp_path, slack).start()
    yield process
    process.kill()


@pytest.fixture
def person(bot):
    return SlackUser(bot)
