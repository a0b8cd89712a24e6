"""AutoML as pure values: the catalog's AutoML models, the plan and its replies, the search's conditions, the
engine behind ask/tell (rebuilt from its journal), the best trial, and the cards within Slack's limits."""

from __future__ import annotations

import math
import sys

import pytest
from slack_sdk.models.blocks import Block

from taobot.automl.conditions import search_conditions
from taobot.automl.engine import INSTALL_COMMAND, SearchEngine, engine_missing, search_schema
from taobot.automl.plan import ALGORITHMS, default_plan
from taobot.automl.replies import apply_settings, is_automl_key
from taobot.automl.trials import Trial, best_trial
from taobot.automl.views import ExperimentCard, ExperimentFinal, metric_of
from taobot.catalog import load_catalog
from taobot.catalog.automl import automl_models, automl_support
from taobot.intake import start_intake
from taobot.intake.replies import parse_reply
from taobot.progress import read_progress
from taobot.slack.automl_cards import AUTOML_TRAIN_BEST, experiment_card, experiment_final

CATALOG = load_catalog()


def plan(**settings: str):
    base = default_plan(automl_support(CATALOG, "cosmos-rl"), "abcd1234")
    change = apply_settings(base, list(settings.items()))
    assert not change.errors, change.errors
    return change.plan


def known_loss(lr: float) -> float:
    """The SLURM stand-in's validation loss for a learning rate (its AutoML block), dropout at its default."""
    return (math.log10(lr) + 3) ** 2


def test_the_catalog_names_the_automl_models_and_resolves_aliases():
    able = automl_models(CATALOG)
    assert {"cosmos-rl", "dino", "rtdetr"} <= set(able)
    assert "vila" not in able  # the bank marks it supported, but without a default search space taobot has none
    assert automl_support(CATALOG, "cosmos-reason").model == "cosmos-rl"  # an alias
    support = automl_support(CATALOG, "dino")
    assert support.metric == "val_mAP50" and support.higher_is_better and "train.optim.lr" in support.search


def test_the_default_plan_is_the_models_and_the_budget_replies_change_it():
    p = plan()
    assert (p.trials, p.parallel, p.algorithm, p.metric, p.higher_is_better) == (4, 2, "asha", "val_loss", False)
    assert set(p.params) == {"train.optm_lr", "train.optm_decay_type"}
    p = plan(trials="6", parallel="1", epochs="3")
    assert (p.trials, p.parallel, p.epochs) == (6, 1, 3)
    assert p.algorithm == "bayesian"  # one at a time: the default follows `parallel`
    p = plan(algorithm="asha", parallel="1")
    assert p.algorithm == "asha"  # a chosen algorithm stays chosen


def test_search_replies_set_ranges_choices_and_remove_parameters():
    p = plan(**{"search.train.optm_lr": "1e-5..1e-2", "search.train.optm_decay_type": "off"})
    assert list(p.params) == ["train.optm_lr"]
    lr = p.params["train.optm_lr"]
    assert (lr.low, lr.high, lr.whole) == (1e-5, 1e-2, False) and 1e-5 <= lr.default <= 1e-2
    p = plan(**{"search.policy.lora.r": "4..64", "search.train.optimizer": "adamw|sgd"})
    assert p.params["policy.lora.r"].whole and p.params["policy.lora.r"].text == "4..64"
    assert p.params["train.optimizer"].choices == ("adamw", "sgd")
    p = plan(metric="val_acc:max")
    assert (p.metric, p.higher_is_better) == ("val_acc", True)


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("trials", "0", "whole number from 1 to 50"),
        ("trials", "four", "whole number from 1 to 50"),
        ("parallel", "99", "from 1 to 16"),
        ("algorithm", "pbt", "`asha`, `bayesian`"),
        ("search.train.optm_lr", "1e-2..1e-5", "the smaller first"),
        ("search.train.optm_lr", "0.001", "neither a range nor choices"),
        ("search.train.x", "a|a", "two or more different values"),
        ("search.nothing.here", "off", "is not searched"),
        ("search.bad key!", "1..2", "does not name a spec key"),
        ("metric", "val loss", "a metric name"),
        ("higher_is_better", "maybe", "yes or no"),
    ],
)
def test_a_bad_plan_value_says_the_shape_expected_and_changes_nothing(key, value, expected):
    before = plan()
    change = apply_settings(before, [("trials", "6"), (key, value)])
    assert change.plan == before and not change.said
    assert len(change.errors) == 1 and expected in change.errors[0], change.errors


def test_the_intake_leaves_the_searchs_answers_to_it_in_an_automl_thread_only():
    state = start_intake(CATALOG, "cosmos-rl", "train", "U1", "C1")
    text = "search.train.optm_lr=1e-5..1e-2 trials=4 num_gpus=2"
    assert [type(e).__name__ for e in parse_reply(text, state, CATALOG).events][0] == "SetSpecInput"
    state.kind = "automl"
    parsed = parse_reply(text, state, CATALOG)
    assert [type(e).__name__ for e in parsed.events] == ["SetCompute"] and not parsed.errors
    assert is_automl_key("search.x") and is_automl_key("Trials") and not is_automl_key("num_gpus")


def test_the_searchs_conditions_name_the_engine_parameters_budget_and_gpus():
    conditions = {c.name: c for c in search_conditions(plan(), None, 2, None)}
    assert all(c.ok for c in conditions.values())
    assert conditions["GPUs of the trials at once"].detail == "2 × 2 = 4 GPUs"
    bad = {c.name: c for c in search_conditions(
        plan(**{"search.train.optm_lr": "off", "search.train.optm_decay_type": "off", "trials": "2", "parallel": "3"}),
        "not installed", 8, "24 GPUs is over the policy's limit of 16 per person",
    )}  # fmt: skip
    assert not any(c.ok for c in bad.values())
    assert (
        "more than `trials=2`" in bad["budget"].detail and "16 per person" in bad["GPUs of the trials at once"].detail
    )


def test_without_the_engine_automl_answers_with_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "tao_automl", None)  # as if the extra were not installed
    missing = engine_missing()
    assert missing and INSTALL_COMMAND in missing and INSTALL_COMMAND == "pip install 'taobot[automl]'"
    with pytest.raises(Exception, match="taobot\\[automl\\]"):
        SearchEngine(plan(), __import__("pathlib").Path("/nonexistent/never-made"))


def test_the_search_space_handed_to_the_engine_is_the_plans_own():
    schema = search_schema(plan(epochs="2", **{"search.policy.lora.r": "4..64"}))
    train = schema["properties"]["train"]["properties"]
    assert train["optm_lr"]["minimum"] == 1e-6 and train["optm_lr"]["maximum"] == 1e-3
    assert train["optm_decay_type"]["enum"] == ["cosine", "linear"]
    assert schema["properties"]["policy"]["properties"]["lora"]["properties"]["r"]["type"] == "integer"
    assert schema["default"]["train"]["epoch"] == 2


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_the_engine_rebuilt_from_its_journal_recommends_what_it_did_before(tmp_path, algorithm):
    p = plan(algorithm=algorithm, epochs="2", **{"search.train.optm_lr": "1e-5..1e-2"})
    engine, seen, pending = SearchEngine(p, tmp_path / "ws"), [], []
    for _ in range(8):
        recs = engine.ask()
        seen += recs
        pending += recs
        engine = SearchEngine(p, tmp_path / "ws", engine.journal)  # a restart after every call
        if not pending:
            break
        rec_id, values = pending.pop(0)
        engine.tell(rec_id, known_loss(values["train.optm_lr"]))
        engine = SearchEngine(p, tmp_path / "ws", engine.journal)
    assert engine.replay_mismatches == 0
    assert engine.values() == dict(seen)  # the rebuilt engine holds the values the trials ran with
    ids = [rec_id for rec_id, _ in seen]
    assert len(ids) >= 4 and len(set(ids)) == len(ids)  # every recommendation is new: one trial each
    assert len({round(v["train.optm_lr"], 12) for _, v in seen[:4]}) >= 3  # not the same values over and over
    assert all(1e-5 <= v["train.optm_lr"] <= 1e-2 for _, v in seen)


def test_the_best_trial_is_the_best_metric_that_succeeded():
    trials = [
        Trial(intake_id="a", number=1, rec_id=0, metric=0.5, outcome="success"),
        Trial(intake_id="a", number=2, rec_id=1, metric=0.1, outcome="no val_loss in its results"),
        Trial(intake_id="a", number=3, rec_id=2, metric=0.2, outcome="success"),
        Trial(intake_id="a", number=4, rec_id=3, metric=0.2, outcome="success"),
    ]
    assert best_trial(trials, higher_is_better=False).number == 3
    assert best_trial(trials, higher_is_better=True).number == 1
    assert best_trial(trials[1:2], higher_is_better=False) is None


def test_a_trials_metric_is_its_last_validation_record_else_its_last_epochs():
    records = [
        '{"status": "RUNNING", "epoch": 1, "max_epoch": 2, "kpi": {"train_loss": 0.5, "val_loss": 0.9}}',
        '{"status": "RUNNING", "message": "Eval metrics generated.", "kpi": {"val_loss": 0.0123}}',
        '{"status": "SUCCESS", "message": "done"}',
    ]
    assert metric_of(read_progress(records), "val_loss") == 0.0123
    assert metric_of(read_progress(records[:1]), "val_loss") == 0.9
    assert metric_of(read_progress(records), "val_mAP50") is None and metric_of(None, "val_loss") is None


def test_the_cards_fit_slacks_limits_and_the_final_offers_train_with_these_values():
    p = plan(trials="50", parallel="4").model_copy(update={"status": "running"})
    trials = tuple(
        Trial(intake_id=p.intake_id, number=n, rec_id=n - 1, values={"train.optm_lr": 10 ** -(n % 5 + 1)},
              state="reported", metric=known_loss(10 ** -(n % 5 + 1)), outcome="success", gpu_hours=0.5)
        for n in range(1, 51)
    )  # fmt: skip
    card = experiment_card(ExperimentCard(p, trials, (), 2))
    for block in card["blocks"]:
        Block.parse(block).validate_json()
    text = str(card)
    assert "running: 50 of 50 trials done" in text and "and 10 more" in text
    assert "GPU-hours used:* 25.000" in text and "Cancel search" in text
    best = best_trial(list(trials), False)
    final = experiment_final(ExperimentFinal(p, best, 50, 25.0))
    for block in final["blocks"]:
        Block.parse(block).validate_json()
    assert AUTOML_TRAIN_BEST in str(final) and f"trial {best.number}" in final["text"]


class RecordingSlack:
    """Stands in for Slack in-process: what the services posted, updated and told one person."""

    def __init__(self) -> None:
        self.posts, self.updates, self.ephemerals = [], [], []

    def post(self, channel, view, thread_ts=None, metadata=None):
        self.posts.append(view)
        return f"1700000000.{len(self.posts):06d}"

    def update(self, channel, ts, view):
        self.updates.append(view)

    def ephemeral(self, channel, user, text, thread_ts=None):
        self.ephemerals.append(text)

    def find_posted(self, *args, **kwargs):
        return None

    def publish_home(self, user, view):
        pass


def services_on(tmp_path):
    from cryptography.fernet import Fernet

    from taobot.secrets import SecretBox
    from taobot.services import Services
    from taobot.store import Store

    store = Store(tmp_path / "taobot.db", SecretBox(Fernet.generate_key()))
    slack = RecordingSlack()
    return Services(store, CATALOG, slack), store, slack


def test_without_the_engine_a_search_is_refused_with_the_install_command_and_nothing_is_made(tmp_path, monkeypatch):
    services, store, slack = services_on(tmp_path)
    monkeypatch.setitem(sys.modules, "tao_automl", None)
    assert services.automl.start("C1", "U1", "cosmos-rl") is None
    assert len(slack.ephemerals) == 1 and "pip install 'taobot[automl]'" in slack.ephemerals[0]
    assert slack.posts == [] and store.db.execute("SELECT COUNT(*) FROM intakes").fetchone()[0] == 0
    audit = store.audit_rows()
    assert [(a["action"], a["allowed"]) for a in audit] == [("automl_start", 0)] and "nvidia-tao-automl" in audit[0][
        "reason"
    ]


def test_an_automl_thread_is_a_train_intake_with_a_plan_and_its_card(tmp_path):
    services, store, slack = services_on(tmp_path)
    state = services.automl.start("C1", "U1", "cosmos-reason")
    assert state is not None and store.get_intake(state.id).kind == "automl" and state.action == "train"
    card = slack.posts[-1]
    assert isinstance(card, ExperimentCard) and card.plan.model == "cosmos-rl" and card.plan.status == "planning"
    assert {c.name: c.ok for c in card.conditions}["AutoML engine installed"]
