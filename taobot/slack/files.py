"""Reading a file a person uploaded through a modal's `file_input`, with the bot's own token.

The submission names the file; `files.info` (scope `files:read`) says where its bytes are
(`url_private`), and that URL hands them over only with the bot token in an Authorization
header — without it Slack answers with its sign-in page, which is refused here rather than
read as the file. The size is checked before anything is downloaded and again while
reading, and the text must be UTF-8. Nothing is written to disk.
"""

from __future__ import annotations

import urllib.error
import urllib.request

from taobot.errors import TaobotError

TIMEOUT_S = 10.0


class SlackFileError(TaobotError):
    """The uploaded file could not be read; the message says why, for the person."""


def read_uploaded_text(client, file_id: str, limit: int) -> tuple[str, str]:
    """(file name, text) of the uploaded file `file_id`; raises SlackFileError."""
    try:
        info = client.api_call("files.info", params={"file": file_id}).data
    except Exception as exc:  # SlackApiError (file_not_found, missing_scope) or a connection error
        error = getattr(getattr(exc, "response", None), "get", lambda _k: None)("error") or type(exc).__name__
        raise SlackFileError(f"Slack did not describe the uploaded file ({error})") from None
    meta = info.get("file") or {}
    name = str(meta.get("name") or file_id)
    size = int(meta.get("size") or 0)
    if size > limit:
        raise SlackFileError(f"`{name}` is {size // 1024} KB; at most {limit // 1024} KB is read")
    url = meta.get("url_private_download") or meta.get("url_private")
    if not url:
        raise SlackFileError(f"Slack gave no download address for `{name}`")
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {client.token}"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310 - Slack's own file URL
            kind = response.headers.get("Content-Type", "")
            data = response.read(limit + 1)
    except (urllib.error.URLError, OSError) as exc:
        raise SlackFileError(f"downloading `{name}` from Slack failed ({type(exc).__name__})") from None
    if kind.startswith("text/html") and b"<html" in data[:512].lower():
        raise SlackFileError(f"Slack answered with a web page instead of `{name}` (the bot's token was not accepted)")
    if len(data) > limit:
        raise SlackFileError(f"`{name}` is larger than {limit // 1024} KB")
    try:
        return name, data.decode("utf-8")
    except UnicodeDecodeError:
        raise SlackFileError(f"`{name}` is not a text file (UTF-8)") from None
