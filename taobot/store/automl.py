"""AutoML rows: one experiment per AutoML thread, its trials, and the values a *Train with these values* thread
takes into its spec. Uses the Store's connection and transactions (composition: `AutomlRows(store)`)."""

from __future__ import annotations

import json
import time

from taobot.automl.plan import AutomlPlan
from taobot.automl.trials import Trial


class AutomlRows:
    def __init__(self, store) -> None:
        self.store = store

    # ------------------------------------------------------------------ experiments

    def save_plan(self, plan: AutomlPlan) -> None:
        with self.store.transaction() as db:
            db["automl_experiments"].upsert(
                {"intake_id": plan.intake_id, "plan": plan.model_dump_json(), "status": plan.status,
                 "updated_at": time.time()},
                pk="intake_id",
            )  # fmt: skip

    def plan(self, intake_id: str) -> AutomlPlan | None:
        row = self._row(intake_id)
        return AutomlPlan.model_validate_json(row["plan"]) if row else None

    def experiment(self, intake_id: str) -> dict | None:
        """The experiment row (plan, status, journal, card and final timestamps), or None."""
        return self._row(intake_id)

    def journal(self, intake_id: str) -> list:
        row = self._row(intake_id)
        return json.loads(row["journal"] or "[]") if row else []

    def update_experiment(self, intake_id: str, **changes) -> None:
        changes["updated_at"] = time.time()
        with self.store.transaction() as db:
            db["automl_experiments"].update(intake_id, changes)

    def running(self) -> list[str]:
        """Searches that run, and stopped or cancelled ones whose trials have not all been seen to end yet or
        whose final reply is not out."""
        with self.store._lock:
            rows = self.store.db.execute(
                "SELECT intake_id FROM automl_experiments e WHERE status = 'running' OR (status IN ('done', "
                "'cancelled') AND (final_ts IS NULL OR final_ts = 'posting' OR EXISTS (SELECT 1 FROM automl_trials t "
                "WHERE t.intake_id = e.intake_id AND t.state IN ('launching', 'running'))))"
            ).fetchall()
        return [r[0] for r in rows]

    def stale_plans(self) -> list[str]:
        """Searches not started whose intake changed since their card was last drawn (`updated_at`)."""
        with self.store._lock:
            rows = self.store.db.execute(
                "SELECT e.intake_id FROM automl_experiments e JOIN intakes i ON i.id = e.intake_id "
                "WHERE e.status = 'planning' AND i.updated_at > e.updated_at"
            ).fetchall()
        return [r[0] for r in rows]

    def _row(self, intake_id: str) -> dict | None:
        with self.store._lock:
            cursor = self.store.db.execute("SELECT * FROM automl_experiments WHERE intake_id = ?", [intake_id])
            row = cursor.fetchone()
            return dict(zip([c[0] for c in cursor.description], row)) if row else None

    # ------------------------------------------------------------------ trials

    def trials(self, intake_id: str) -> list[Trial]:
        with self.store._lock:
            rows = self.store.db.execute(
                "SELECT trial FROM automl_trials WHERE intake_id = ? ORDER BY number", [intake_id]
            ).fetchall()
        return [Trial.model_validate_json(r[0]) for r in rows]

    def trial_of_launch(self, launch_id: str) -> Trial | None:
        with self.store._lock:
            row = self.store.db.execute("SELECT trial FROM automl_trials WHERE launch_id = ?", [launch_id]).fetchone()
        return Trial.model_validate_json(row[0]) if row else None

    def add_trials(self, intake_id: str, trials: list[Trial], journal: list) -> None:
        """New trials and the engine's journal as it stands after recommending them, in one transaction."""
        with self.store.transaction() as db:
            for trial in trials:
                db["automl_trials"].insert(_trial_row(trial))
            db["automl_experiments"].update(intake_id, {"journal": json.dumps(journal), "updated_at": time.time()})

    def save_trial(self, trial: Trial, journal: list | None = None) -> None:
        """One trial's new state (and, when the engine was told about it, the journal), in one transaction."""
        with self.store.transaction() as db:
            db["automl_trials"].upsert(_trial_row(trial), pk=("intake_id", "number"))
            if journal is not None:
                db["automl_experiments"].update(
                    trial.intake_id, {"journal": json.dumps(journal), "updated_at": time.time()}
                )

    # ------------------------------------------------------------------ prefilled train threads

    def save_prefill(self, intake_id: str, from_intake: str, trial: int, overrides: dict) -> None:
        with self.store.transaction() as db:
            db["automl_prefills"].upsert(
                {"intake_id": intake_id, "from_intake": from_intake, "trial": trial,
                 "overrides": json.dumps(overrides), "at": time.time()},
                pk="intake_id",
            )  # fmt: skip

    def prefill(self, intake_id: str) -> dict | None:
        with self.store._lock:
            row = self.store.db.execute("SELECT overrides FROM automl_prefills WHERE intake_id = ?", [intake_id])
            found = row.fetchone()
        return json.loads(found[0]) if found else None


def _trial_row(trial: Trial) -> dict:
    return {
        "intake_id": trial.intake_id,
        "number": trial.number,
        "rec_id": trial.rec_id,
        "trial": trial.model_dump_json(),
        "state": trial.state,
        "launch_id": trial.launch_id,
    }
