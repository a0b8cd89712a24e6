"""Each Slack person's Kubernetes identity in a launch thread: a cluster profile open to them, or their own kubeconfig.

A person picks one of the operator's cluster profiles that is open to them in this channel
(`TAO_K8S_PROFILE`), or uploads their own kubeconfig (`KUBECONFIG_CONTENT`, which sets
`TAO_K8S_PROFILE=own-kubeconfig`). The bot's own kubeconfig and in-cluster service account are
reached only through a profile that names them. A form naming a profile not open to the person,
a namespace outside the profile's, a kubeconfig path on the bot's host, or an upload that would
reach the bot's host (exec, auth provider, file paths) is refused field by field, each with what
is allowed instead, and audited; preflight and launch refuse them again (`refusal`), before any
request reaches a cluster. On the person's own machine (`taobot console`) a kubeconfig path is
theirs and allowed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace

from taobot.intake import IntakeState
from taobot.kube import KubeConfigUnusable, check_namespace, identity_of
from taobot.kube_profiles import OWN_KUBECONFIG, KubeProfile, profile_named, usable_profiles
from taobot.kube_upload import UploadedKubeconfig, UploadRefused, read_uploaded_kubeconfig
from taobot.secrets import REDACTOR
from taobot.services.desk import Desk
from taobot.views import CredentialsForm

log = logging.getLogger(__name__)

PROFILE = "TAO_K8S_PROFILE"
UPLOAD = "KUBECONFIG_CONTENT"
PATH = "KUBECONFIG"
CONTEXT = "TAO_K8S_CONTEXT"
NAMESPACE = "TAO_K8S_NAMESPACE"
# what only the person's own machine may name: a file on the host taobot runs on, a context of such a file
PATH_ONLY = (PATH, CONTEXT)


class KubeAccess:
    def __init__(self, desk: Desk, settings) -> None:
        self.desk = desk
        self.settings = settings  # PlatformSettings: the operator's kube_profiles, on_persons_machine

    # ------------------------------------------------------------------ what a person may choose

    def open_to(self, state: IntakeState) -> list[KubeProfile]:
        """The cluster profiles the launch's owner may use in its channel."""
        return usable_profiles(self.settings.kube_profiles, state.owner, state.channel)

    def with_choices(self, form: CredentialsForm) -> CredentialsForm:
        """The credentials form with the profiles the owner may pick (Kubernetes only)."""
        if form.facts.platform is None or form.facts.platform.name != "kubernetes":
            return form
        return replace(form, kube_profiles=tuple(self.open_to(form.facts.state)))

    def _open_names(self, state: IntakeState) -> str:
        names = ", ".join(f"`{p.name}`" for p in self.open_to(state))
        return f"profiles open to you here: {names}" if names else "no profile is open to you here"

    def profile_problem(self, state: IntakeState, choice: str) -> str | None:
        """Why the owner may not use TAO_K8S_PROFILE=`choice` in this thread, or None."""
        if not choice or choice == OWN_KUBECONFIG:
            return None
        profile = profile_named(self.settings.kube_profiles, choice)
        if profile is None:
            return f"There is no cluster profile `{choice}` ({self._open_names(state)}); or upload your own kubeconfig."
        if not profile.may_use(state.owner, state.channel):
            return (
                f"Cluster profile `{choice}` is not open to <@{state.owner}> in this channel (it is for {profile.who}); "
                f"{self._open_names(state)}, or upload your own kubeconfig."
            )
        return None

    # ------------------------------------------------------------------ forms

    def refusals(self, state: IntakeState, values: Mapping[str, str], user: str | None = None) -> dict[str, str]:
        """Problems by field of a submitted credentials form; each refusal is audited. Fast: it runs inside the ack."""
        if state.platform != "kubernetes":
            return {}
        problems: dict[str, str] = {}
        if not self.settings.on_persons_machine:
            for name in PATH_ONLY:
                if values.get(name):
                    problems[name] = (
                        f"{name} names a kubeconfig on the bot's host, which a person in Slack may not choose. Choose "
                        "a cluster profile above, or upload your own kubeconfig; a path works in `taobot console` on "
                        "your own machine."
                    )
        choice = (values.get(PROFILE) or "").strip()
        if problem := self.profile_problem(state, choice):
            problems[PROFILE] = problem
        if values.get(UPLOAD):  # uploads arrive as a file and are checked when read (`check_upload`), never typed
            problems[UPLOAD] = "Upload your kubeconfig as a file, in the *Or upload your own kubeconfig* field."
        namespace = (values.get(NAMESPACE) or "").strip()
        if namespace and PROFILE not in problems:
            chosen = choice or self._stored(state).get(PROFILE, "")
            profile = profile_named(self.settings.kube_profiles, chosen) if chosen != OWN_KUBECONFIG else None
            if profile is not None and namespace not in profile.namespaces:
                listed = ", ".join(f"`{n}`" for n in profile.namespaces)
                problems[NAMESPACE] = (
                    f"Namespace `{namespace}` is not one of cluster profile `{profile.name}`'s namespaces: {listed}."
                )
        for field, reason in problems.items():
            audit = self.desk.audit
            audit(
                user or state.owner,
                "kubernetes identity",
                intake=state,
                allowed=False,
                reason=reason,
                detail={"field": field},
            )
        return problems

    def _stored(self, state: IntakeState) -> dict[str, str]:
        """The thread's non-secret Kubernetes choices as held (TAO_K8S_PROFILE), for checks that depend on them."""
        values = self.desk.credential_values(state)
        return {k: v for k, v in values.items() if k == PROFILE}

    def upload_values(self, text: str) -> tuple[dict[str, str], UploadedKubeconfig]:
        """What an accepted upload stores: the cut-down kubeconfig and the choice of it. Raises UploadRefused."""
        upload = read_uploaded_kubeconfig(text)
        return {UPLOAD: upload.text, PROFILE: OWN_KUBECONFIG}, upload

    def check_upload(self, user: str, intake_id: str, name: str, text: str):
        """(values to store, the upload) for an uploaded kubeconfig taobot accepts; else None, the refusal said and
        audited. The file's text is never shown, logged or stored as it came."""
        state = self.desk.store.get_intake(intake_id)
        if state is None:
            return None
        try:
            values, upload = self.upload_values(text)
        except UploadRefused as exc:
            self.refuse(
                state,
                user,
                "kubernetes identity",
                f"`{name}`: {exc}",
                "Your kubeconfig was not saved: nothing changed.",
            )
            return None
        for value in upload.secrets:  # its token or key never shows, even alone in some text
            REDACTOR.add(value)
        return values, upload

    def upload_unread(self, user: str, intake_id: str, why: str) -> None:
        state = self.desk.store.get_intake(intake_id)
        if state is not None:
            self.desk.reply(state, f"The kubeconfig <@{user}> uploaded could not be read: {why}. Nothing was saved.")

    def upload_saved(self, intake_id: str, name: str, upload: UploadedKubeconfig) -> None:
        """Say which identity the accepted upload is (no credential), and what of the file was left out."""
        state = self.desk.store.get_intake(intake_id)
        if state is None or state.credentials.get(UPLOAD) is None:
            return
        notes = "".join(f"\n• {n}" for n in upload.notes)
        self.desk.reply(
            state,
            f"Your kubeconfig `{name}` is saved, encrypted: {upload.summary()}. TAO_K8S_PROFILE is `{OWN_KUBECONFIG}`."
            + notes,
        )

    @staticmethod
    def upload_conflict(values: Mapping[str, str], uploading: bool) -> str | None:
        """A form that picks an operator profile and uploads a kubeconfig at once says two different things."""
        choice = (values.get(PROFILE) or "").strip()
        if uploading and choice and choice != OWN_KUBECONFIG:
            return f"Choose a cluster profile (`{choice}`) or upload your own kubeconfig, not both."
        return None

    # ------------------------------------------------------------------ preflight and launch, again

    def refusal(self, state: IntakeState, credentials: Mapping[str, str]) -> str | None:
        """Why this thread's Kubernetes identity may not be used now (the policy may have changed), or None.

        Asked before a preflight starts and before a launch submits; nothing has been asked of a cluster yet.
        """
        if state.platform != "kubernetes":
            return None
        if problem := self.profile_problem(state, credentials.get(PROFILE) or ""):
            return problem
        try:
            identity_of(credentials, self.settings)
            check_namespace(credentials, self.settings)
        except KubeConfigUnusable as exc:
            if any(credentials.get(n) for n in (PROFILE, PATH, UPLOAD)):  # no choice at all is the gate's to say
                return f"{exc.detail}. {exc.remediation}"
        return None

    def refuse(self, state: IntakeState, user: str, action: str, reason: str, head: str) -> None:
        """Say the refusal in the thread and audit it; nothing was created."""
        self.desk.audit(user, action, intake=state, allowed=False, reason=reason)
        self.desk.reply(state, f"{head}\n• {reason}")
