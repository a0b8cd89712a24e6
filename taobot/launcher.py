"""Turn an intake whose gate is open into a submitted job.

`build_launch_spec` is pure: the rendered inputs for a backend. `Launcher`
asks the gate first (`require_open`), records the launch row as
"Submitting" BEFORE it talks to the platform (so a crash mid-submit is
visible after a restart instead of leaving an unknown job), submits, and
records the job id.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping

from taobot.backends.base import JOB_ENV_CREDENTIALS, RESULTS_PLACEHOLDER, Backend, LaunchSpec, Submitted
from taobot.catalog import Catalog
from taobot.errors import BackendUnreachable, LaunchFailed
from taobot.gate import GateRules, require_open
from taobot.intake import IntakeState, action_of, dataset_inputs, model_of, platform_of, status_interval
from taobot.launches import JobState, Launch
from taobot.preflight.base import local_path
from taobot.triage import columns, submit_triage

log = logging.getLogger(__name__)


def build_launch_spec(
    state: IntakeState,
    catalog: Catalog,
    credentials: dict[str, str],
    launch_id: str,
    overrides: Mapping[str, object] | None = None,
) -> LaunchSpec:
    """`overrides`: spec keys set last, over everything the intake gave (a workflow stage's inputs from earlier
    stages' results, a search trial's values)."""
    model, action, platform = model_of(state, catalog), action_of(state, catalog), platform_of(state, catalog)
    assert platform is not None and state.image.chosen is not None
    flat: dict[str, object] = {}
    for key, path in dataset_inputs(state, catalog).items():
        # lustre:/// and file:/// are how people write paths; the container sees plain absolute paths.
        flat[key] = local_path(path) or path
    num_gpus = state.compute.get("num_gpus", platform.resources.num_gpus)
    num_nodes = state.compute.get("num_nodes", 1)
    if model.gpus_key:
        flat[model.gpus_key] = num_gpus
    if model.nodes_key:
        flat[model.nodes_key] = num_nodes
    if action.results_key:
        flat[action.results_key] = state.results_uri or RESULTS_PLACEHOLDER
    flat.update(overrides or {})
    job_env = {k: v for k, v in credentials.items() if k in JOB_ENV_CREDENTIALS}
    return LaunchSpec(
        launch_id=launch_id,
        platform=platform.name,
        model=model.name,
        action=action.name,
        image=state.image.chosen,
        command=action.command,
        config_format=action.config_format,
        spec=flat,
        datasets=dataset_inputs(state, catalog),
        num_gpus=num_gpus,
        num_nodes=num_nodes,
        resources=platform.resources,
        platform_credentials=dict(credentials),
        job_env=job_env,
        results_uri=state.results_uri,
        labels={"taobot.intake": state.id, "taobot.owner": state.owner},
    )


class Launcher:
    def __init__(self, store, catalog: Catalog, backends: dict[str, Backend]) -> None:
        self.store = store
        self.catalog = catalog
        self.backends = backends

    def backend(self, platform: str) -> Backend:
        return self.backends[platform]

    def launch(
        self,
        state: IntakeState,
        user: str,
        credentials: dict[str, str],
        rules: GateRules | None = None,
        *,
        stage: IntakeState | None = None,
        overrides: Mapping[str, object] | None = None,
        launch_id: str | None = None,
    ) -> tuple[Launch, Submitted]:
        """Submit the job. Raises GateClosedError, LaunchFailed or BackendUnreachable; the row says what happened.

        `rules`: the operator's policy for this launch (`gate.GateRules`), worked out by the caller.
        A workflow stage passes `stage` (the thread's answers seen from that stage: its action and image, which
        the workflow's gate checked), its `overrides` and its `launch_id`: the gate is asked of the thread's
        `state`, which is what is saved.
        """
        require_open(state, self.catalog, "submit a job", rules)
        launch_id = launch_id or f"{state.id}-{int(time.time()) % 100000:05d}"
        spec = build_launch_spec(stage or state, self.catalog, credentials, launch_id, overrides)
        now = time.time()
        launch = Launch(
            id=launch_id,
            intake_id=state.id,
            channel=state.channel,
            thread_ts=state.thread_ts,
            owner=state.owner,
            platform=spec.platform,
            model=spec.model,
            action=spec.action,
            state=JobState.SUBMITTING,
            native="submitting",
            monitor=bool(state.monitor),
            notify_dm=state.notify_dm,
            interval_minutes=status_interval(state, self.catalog),
            launched_at=now,
            state_since=now,
        )
        state.status = "launched"
        state.updated_at = now
        self.store.add_launch(launch, state, user)
        try:
            submitted = self.backend(spec.platform).launch(spec)
        except Exception as exc:
            # Nothing runs: the intake goes back to complete so the person can fix and launch again. A refusal
            # (or a platform that did not answer) is triaged like a job's failure, so Retry is offered only
            # where another attempt can help; an unexpected error is taobot's own, with no triage.
            message = str(getattr(exc, "message", exc))
            found = (
                submit_triage(message, unreachable=isinstance(exc, BackendUnreachable))
                if isinstance(exc, (LaunchFailed, BackendUnreachable))
                else None
            )
            self.store.update_launch(
                launch_id,
                state=JobState.FAILED,
                native="submit failed",
                reason=message[:500],
                ended_at=time.time(),
                final_posted=True,
                **(columns(found) if found else {}),
            )
            state.status = "complete"
            self.store.save_intake(state, user, "launch_failed", {"launch": launch_id, "error": type(exc).__name__})
            raise
        self.store.update_launch(
            launch_id,
            job_id=submitted.job_id,
            details=json.dumps(dict(submitted.details)),
            log_location=submitted.log_location,
            results_location=submitted.results_location,
            state=JobState.PENDING,
            native="submitted",
            state_since=time.time(),
        )
        log.info(
            "launched",
            extra={"intake": state.id, "launch": launch_id, "job": submitted.job_id, "platform": spec.platform},
        )
        return self.store.get_launch(launch_id), submitted
