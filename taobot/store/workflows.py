"""Workflow runs and their stages: the workflow's own answers, keyed by intake id (mixed into Store)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class WorkflowRun:
    intake_id: str
    workflow: str
    model: str
    plan: dict
    images: dict
    status: str
    run: int
    start_index: int
    card_ts: str | None


@dataclass(frozen=True)
class StageRow:
    intake_id: str
    run: int
    idx: int
    name: str
    launch_id: str | None
    state: str
    results: str | None = None
    checkpoint: str | None = None
    metrics: dict = field(default_factory=dict)
    note: str = ""
    started_at: float | None = None
    ended_at: float | None = None


def _run(row: dict) -> WorkflowRun:
    return WorkflowRun(
        row["intake_id"],
        row["workflow"],
        row["model"],
        json.loads(row["plan"]),
        json.loads(row["images"]),
        row["status"],
        row["run"],
        row["start_index"],
        row["card_ts"],
    )


def _stage(row: dict) -> StageRow:
    return StageRow(
        row["intake_id"],
        row["run"],
        row["idx"],
        row["name"],
        row["launch_id"],
        row["state"],
        row["results"],
        row["checkpoint"],
        json.loads(row["metrics"] or "{}"),
        row["note"] or "",
        row["started_at"],
        row["ended_at"],
    )


class WorkflowRows:
    """Mixed into Store, which provides the connection, its lock and transactions."""

    def add_workflow_run(self, intake_id: str, workflow: str, model: str, plan: dict, images: dict) -> None:
        with self.transaction() as db:
            db["workflow_runs"].insert(
                {
                    "intake_id": intake_id,
                    "workflow": workflow,
                    "model": model,
                    "plan": json.dumps(plan, sort_keys=True),
                    "images": json.dumps(images, sort_keys=True),
                    "status": "collecting",
                    "run": 0,
                    "start_index": 0,
                    "card_ts": None,
                    "updated_at": time.time(),
                },
                pk="intake_id",
            )

    def workflow_run(self, intake_id: str) -> WorkflowRun | None:
        with self._lock:
            rows = list(self.db["workflow_runs"].rows_where("intake_id = ?", [intake_id]))
        return _run(rows[0]) if rows else None

    def update_workflow_run(self, intake_id: str, **changes) -> None:
        for key in ("plan", "images"):
            if key in changes:
                changes[key] = json.dumps(changes[key], sort_keys=True)
        changes["updated_at"] = time.time()
        with self.transaction() as db:
            db["workflow_runs"].update(intake_id, changes)

    def start_workflow_run(self, intake_id: str, start_index: int) -> int:
        """A new run from `start_index` (the first, or a resume); returns its number."""
        with self.transaction() as db:
            row = db["workflow_runs"].get(intake_id)
            number = int(row["run"]) + 1
            db["workflow_runs"].update(
                intake_id, {"run": number, "start_index": start_index, "status": "running", "updated_at": time.time()}
            )
        return number

    def running_workflows(self) -> list[WorkflowRun]:
        with self._lock:
            return [_run(r) for r in self.db["workflow_runs"].rows_where("status = 'running'")]

    def claim_stage(self, intake_id: str, run: int, idx: int, name: str, launch_id: str | None, state: str) -> bool:
        """Record that stage `idx` of this run starts; False when someone already did (it is never started twice)."""
        with self.transaction() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO workflow_stages (intake_id, run, idx, name, launch_id, state, metrics, note, "
                "started_at) VALUES (?, ?, ?, ?, ?, ?, '{}', '', ?)",
                [intake_id, run, idx, name, launch_id, state, time.time()],
            )
            return cursor.rowcount == 1

    def update_stage(self, intake_id: str, run: int, idx: int, **changes) -> None:
        if "metrics" in changes:
            changes["metrics"] = json.dumps(changes["metrics"], sort_keys=True)
        with self.transaction() as db:
            db["workflow_stages"].update((intake_id, run, idx), changes)

    def stage_rows(self, intake_id: str) -> list[StageRow]:
        """Every stage row of the thread, oldest run first."""
        with self._lock:
            rows = self.db["workflow_stages"].rows_where("intake_id = ?", [intake_id], order_by="run, idx")
            return [_stage(r) for r in rows]

    def stage_of_launch(self, launch_id: str) -> StageRow | None:
        with self._lock:
            rows = list(self.db["workflow_stages"].rows_where("launch_id = ?", [launch_id]))
        return _stage(rows[0]) if rows else None
