"""The AutoML engine (`nvidia-tao-automl`, module `tao_automl`) behind a small ask/tell surface.

taobot asks it for recommendations and tells it each trial's metric; it keeps its own state in a workspace
folder (one per experiment); taobot rebuilds it after a restart from its own journal of calls (`SearchEngine`).
The search space handed to it is the plan's own (a JSON schema built from the plan's parameters), so what is
searched is exactly what the thread shows. Third-party errors are wrapped here as AutomlEngineError.
"""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path

from taobot.automl.plan import AutomlPlan, Scalar
from taobot.errors import TaobotError

log = logging.getLogger(__name__)

INSTALL_COMMAND = "pip install 'taobot[automl]'"


class AutomlEngineError(TaobotError):
    """The engine refused the plan or failed; `message` says what it said."""


def engine_missing() -> str | None:
    """None when the engine imports; otherwise what to install, as a person should read it."""
    try:
        import tao_automl  # noqa: F401
    except ImportError:
        return f"the AutoML engine (nvidia-tao-automl) is not installed on the bot's host: `{INSTALL_COMMAND}`"
    return None


def search_schema(plan: AutomlPlan) -> dict:
    """The plan's parameters as the JSON schema the engine reads: nested objects, one leaf per parameter."""
    root: dict = {"type": "object", "properties": {}, "default": {}}
    for key, param in plan.params.items():
        *parents, leaf = key.split(".")
        node, default = root, root["default"]
        for part in parents:
            node = node["properties"].setdefault(part, {"type": "object", "properties": {}})
            default = default.setdefault(part, {})
        if param.choices:
            kind = "integer" if all(isinstance(c, int) and not isinstance(c, bool) for c in param.choices) else "string"
            body = {"type": kind, "enum": list(param.choices)}
        else:
            body = {"type": "integer" if param.whole else "number", "minimum": param.low, "maximum": param.high}
        body.update(default=param.default, automl_enabled=True)
        node["properties"][leaf] = body
        default[leaf] = param.default
    if plan.epochs_key:
        *parents, leaf = plan.epochs_key.split(".")
        node, default = root, root["default"]
        for part in parents:
            node = node["properties"].setdefault(part, {"type": "object", "properties": {}})
            default = default.setdefault(part, {})
        node["properties"].setdefault(leaf, {"type": "integer", "default": plan.epochs or 1})
        default.setdefault(leaf, plan.epochs or 1)
    return root


def _settings(plan: AutomlPlan) -> dict:
    epochs = plan.epochs or 3
    return {
        "algorithm": plan.algorithm,
        "metric": plan.metric,
        "direction": "maximize" if plan.higher_is_better else "minimize",
        "session_id": plan.intake_id,
        "automl_max_recommendations": plan.trials,
        "automl_max_trials": plan.trials,
        "automl_max_concurrent": plan.parallel,
        "automl_max_epochs": epochs,
        "automl_population_size": max(2, plan.parallel),
        "automl_max_generations": max(1, plan.trials // max(2, plan.parallel)),
    }


class SearchEngine:
    """One experiment's engine, rebuilt from its journal. Not thread-safe: the caller holds the experiment's lock.

    The engine's own resume does not bring back its random state (a resumed search recommends the same values
    over and over). So taobot keeps a journal of every call that changed it (`journal`: ["ask", [ids],
    [values]] and ["tell", id, metric]) beside the trials, and a restart rebuilds the engine by replaying it in
    an emptied workspace, each replayed recommendation given back the values its trial ran with. A replayed
    ask that recommends other ids than the first time is logged and counted in `replay_mismatches`.
    """

    def __init__(self, plan: AutomlPlan, workspace: Path, journal: list | None = None) -> None:
        missing = engine_missing()
        if missing:
            raise AutomlEngineError(missing)
        from tao_automl import AutoML

        logging.getLogger("tao_automl").setLevel(logging.WARNING)  # it logs every sampled value at INFO
        schema = search_schema(plan)
        shutil.rmtree(workspace, ignore_errors=True)  # the journal is the state; the folder is the engine's scratch
        workspace.mkdir(parents=True, exist_ok=True)
        try:
            self._engine = AutoML(
                workspace=str(workspace),
                network=plan.network,
                train_specs=schema["default"],
                settings=_settings(plan),
                automl_hyperparameters=list(plan.params),
                action="train",
                search_schema=schema,
            )
        except Exception as exc:  # noqa: BLE001 - the engine raises what it likes; the thread hears one message
            raise AutomlEngineError(f"the AutoML engine refused this search: {type(exc).__name__}: {exc}") from exc
        self.plan = plan
        self.journal: list = []
        self.replay_mismatches = 0
        for op in journal or []:
            if op[0] == "ask":
                recs = self._recommend()
                got = [int(r.id) for r in recs]
                if got != list(op[1]):
                    self.replay_mismatches += 1
                    log.warning("AutoML replay recommended %s where the journal has %s", got, op[1])
                # Some algorithms draw from sources the session id does not seed (Bayesian's optimiser): the
                # values the trials ran with are put back, so the engine learns from what really ran.
                for rec, values in zip(recs, op[2] if len(op) > 2 else ()):
                    rec.specs = dict(values)
                self.journal.append(["ask", got, [_plain(r.specs) for r in recs]])
            else:
                self.tell(int(op[1]), op[2])

    def ask(self) -> list[tuple[int, dict[str, Scalar]]]:
        """New recommendations (id, flat spec values); [] while the engine waits for results."""
        out = [(int(r.id), _plain(r.specs)) for r in self._recommend()]
        op = ["ask", [rec_id for rec_id, _ in out], [values for _, values in out]]
        if out or not self.journal or self.journal[-1] != op:  # waiting asks in a row are one
            self.journal.append(op)
        return out

    def values(self) -> dict[int, dict[str, Scalar]]:
        """The values the engine holds for each recommendation it made."""
        return {int(r.id): _plain(r.specs) for r in self._engine.get_history()}

    def _recommend(self) -> list:
        try:
            return list(self._engine.next_recommendation() or [])
        except Exception as exc:  # noqa: BLE001
            raise AutomlEngineError(f"the AutoML engine failed to recommend: {type(exc).__name__}: {exc}") from exc

    def tell(self, rec_id: int, metric: float | None) -> None:
        """A trial's result: its metric, or None for a trial that gave none (failed, cancelled, no metric)."""
        value = float(metric) if metric is not None and math.isfinite(metric) else None
        try:
            if value is None:
                self._engine.report_result(rec_id, {}, status="failure")
            else:
                self._engine.report_result(rec_id, value, status="success")
        except Exception as exc:  # noqa: BLE001
            raise AutomlEngineError(f"the AutoML engine refused a result: {type(exc).__name__}: {exc}") from exc
        self.journal.append(["tell", rec_id, value])

    def complete(self) -> bool:
        return bool(self._engine.is_complete())


def _plain(specs: dict) -> dict[str, Scalar]:
    """The engine's values as plain JSON scalars (it may hand out numpy numbers)."""
    out: dict[str, Scalar] = {}
    for key, value in (specs or {}).items():
        if hasattr(value, "item"):
            value = value.item()
        out[str(key)] = value
    return out
