"""What can happen to an intake: the events the transitions accept, and their outcome."""

from __future__ import annotations

from dataclasses import dataclass, field

from taobot.intake.state import IntakeState


@dataclass(frozen=True)
class ChoosePlatform:
    name: str


@dataclass(frozen=True)
class SetMonitoring:
    enabled: bool | None = None
    interval: int | None = None


@dataclass(frozen=True)
class SetNotify:
    """Also send the job's end to the owner by DM (`notify=dm`), or only to the thread (`notify=thread`)."""

    dm: bool


@dataclass(frozen=True)
class SetRetry:
    """`retry=infra:N`: an infrastructure failure of this launch retries itself up to N times; `retry=off`: never."""

    infra: int  # 0: off


@dataclass(frozen=True)
class CredentialsStored:
    fingerprints: dict[str, str]  # name -> fingerprint; values went to the store


@dataclass(frozen=True)
class UseSshAgent:
    enabled: bool = True


@dataclass(frozen=True)
class ConfirmImage:
    pass


@dataclass(frozen=True)
class OverrideImage:
    ref: str


@dataclass(frozen=True)
class SetRoot:
    role: str
    path: str


@dataclass(frozen=True)
class SetSpecInput:
    key: str
    path: str


@dataclass(frozen=True)
class SetResults:
    uri: str


@dataclass(frozen=True)
class SetCompute:
    field: str  # num_gpus or num_nodes
    value: int


@dataclass(frozen=True)
class AcceptComputeDefaults:
    pass


@dataclass(frozen=True)
class ConfirmMounted:
    """The person vouches that every unverifiable path is mounted in the job environment."""

    by: str
    at: float


@dataclass(frozen=True)
class Cancel:
    pass


Event = (
    ChoosePlatform
    | SetMonitoring
    | SetNotify
    | SetRetry
    | CredentialsStored
    | UseSshAgent
    | ConfirmImage
    | OverrideImage
    | SetRoot
    | SetSpecInput
    | SetResults
    | SetCompute
    | AcceptComputeDefaults
    | ConfirmMounted
    | Cancel
)


@dataclass
class Outcome:
    state: IntakeState
    notes: list[str] = field(default_factory=list)  # what changed, for a short reply
    errors: list[str] = field(default_factory=list)  # what was refused and what is expected

    @property
    def changed(self) -> bool:
        return bool(self.notes)
