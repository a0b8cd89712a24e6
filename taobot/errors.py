"""The TaobotError tree. Each error carries its context as attributes.

Messages are written for the person reading them in Slack or a terminal;
they never contain secret values.
"""

from __future__ import annotations


class TaobotError(Exception):
    """Base of every error taobot raises on purpose."""

    def __init__(self, message: str, **context: object) -> None:
        super().__init__(message)
        self.message = message
        self.context = context


class ConfigError(TaobotError):
    """A setting is missing or invalid. `setting` names it."""

    def __init__(self, message: str, setting: str | None = None) -> None:
        super().__init__(message, setting=setting)
        self.setting = setting


class CatalogError(TaobotError):
    """The catalog (embedded or a skill bank) is broken. Names file and field."""

    def __init__(self, message: str, file: str | None = None, field: str | None = None) -> None:
        super().__init__(message, file=file, field=field)
        self.file = file
        self.field = field


class UnknownNameError(TaobotError):
    """A model, action or platform name that the catalog does not know."""

    def __init__(self, kind: str, name: str, known: list[str]) -> None:
        self.kind = kind
        self.name = name
        self.known = list(known)
        shown = ", ".join(self.known)
        super().__init__(f"Unknown {kind} `{name}`. Known: {shown}.", kind=kind, name=name)


class InputError(TaobotError):
    """A reply the conversation cannot accept; the message says what is expected."""


class StoreError(TaobotError):
    """The database could not be read or written."""


class IntakeConflict(StoreError):
    """Another writer (a second taobot instance) saved the intake since it was read; read it again and redo."""


class SecretError(TaobotError):
    """A secret could not be encrypted, decrypted or found."""


class GateClosedError(TaobotError):
    """Something tried to create an artifact while the launch gate is closed."""

    def __init__(self, message: str, missing: list[str]) -> None:
        super().__init__(message, missing=missing)
        self.missing = missing


class SlackError(TaobotError):
    """A Slack Web API call failed. `method` and `error` say which and why."""

    def __init__(self, message: str, method: str, error: str | None = None) -> None:
        super().__init__(message, method=method, error=error)
        self.method = method
        self.error = error


class BackendUnreachable(TaobotError):
    """The platform could not be asked (SSH down, API 5xx, daemon gone). Never a job failure."""


class LaunchFailed(TaobotError):
    """Submission was refused by the platform; the message says why."""
