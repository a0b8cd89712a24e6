"""Identifiers shared by the fake Slack server and the request-signing helpers.

They are shaped like real Slack IDs (team ``T…``, user ``U…``, bot ``B…``,
app ``A…``, channel ``C…``) so code that pattern-matches IDs behaves as it
would against Slack.
"""

TEAM_ID = "T0TAOTEST1"
TEAM_DOMAIN = "tao-test"
TEAM_NAME = "Tao Test Workspace"
APP_ID = "A0TAOAPP01"
BOT_ID = "B0TAOBOT01"
BOT_USER_ID = "U0TAOBOT01"
BOT_NAME = "taobot"
USER_ID = "U0TAOUSER1"
USER_NAME = "tao.tester"
CHANNEL_ID = "C0TAOCHAN1"
CHANNEL_NAME = "tao-test"
VERIFICATION_TOKEN = "fake-verification-token"
