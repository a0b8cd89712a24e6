"""The database schema, as sqlite-utils migrations applied in order at every start."""

from __future__ import annotations

import sqlite_utils
from sqlite_utils.migrations import Migrations

migrations = Migrations("taobot")


@migrations()
def m001_initial(db: sqlite_utils.Database) -> None:
    db["intakes"].create(
        {
            "id": str,
            "channel": str,
            "thread_ts": str,
            "owner": str,
            "model": str,
            "action": str,
            "platform": str,
            "status": str,
            "state": str,
            "version": int,
            "created_at": float,
            "updated_at": float,
        },
        pk="id",
    )
    db["intakes"].create_index(["channel", "thread_ts"], unique=True)
    db["intakes"].create_index(["channel", "updated_at"])
    db["events"].create({"id": int, "intake_id": str, "actor": str, "kind": str, "detail": str, "at": float}, pk="id")
    db["events"].create_index(["intake_id", "id"])
    db["secrets"].create(
        {"owner": str, "name": str, "ciphertext": bytes, "fingerprint": str, "updated_at": float},
        pk=("owner", "name"),
    )
    db["seen_deliveries"].create({"key": str, "at": float}, pk="key")


@migrations()
def m002_launches(db: sqlite_utils.Database) -> None:
    db["launches"].create(
        {
            "id": str,  # launch id, shown as `/tao status <id>`
            "intake_id": str,
            "channel": str,
            "thread_ts": str,
            "owner": str,
            "platform": str,
            "model": str,
            "action": str,
            "job_id": str,
            "details": str,  # JSON: what poll/cancel need (remote dir, namespace, host …)
            "log_location": str,
            "results_location": str,
            "state": str,  # normalised JobState value
            "native": str,  # the platform's own state text
            "reason": str,
            "exit_code": int,
            "monitor": int,
            "detached": int,
            "interval_minutes": int,
            "launched_at": float,
            "state_since": float,
            "ended_at": float,
            "unreachable": str,  # why the last poll could not reach the platform, or null
            "unreachable_since": float,
            "next_poll_at": float,  # backoff while unreachable
            "final_posted": int,
        },
        pk="id",
    )
    db["launches"].create_index(["state"])
    db["launches"].create_index(["intake_id"])
    db["launches"].create_index(["channel", "launched_at"])
    # One row per (launch, interval slot), written BEFORE the post: a crash
    # between record and post is retried; a slot is never posted twice.
    db["updates"].create(
        {"launch_id": str, "slot": int, "status": str, "ts": str, "state": str, "at": float},
        pk=("launch_id", "slot"),
    )
    db["lease"].create({"name": str, "holder": str, "expires_at": float}, pk="name")


@migrations()
def m003_secret_flag(db: sqlite_utils.Database) -> None:
    # Settings such as a user name or a namespace are kept encrypted too, but
    # only real secrets are redacted from messages and logs. Rows from before
    # this column count as secret: redacting too much is the safe side.
    db["secrets"].add_column("secret", int, not_null_default=1)


@migrations()
def m004_post_backoff(db: sqlite_utils.Database) -> None:
    # A thread whose posts fail backs off on its own (see posting.py).
    db["launches"].add_column("post_error", str)
    db["launches"].add_column("post_failures", int, not_null_default=0)
    db["launches"].add_column("post_retry_at", float)
    db["launches"].add_column("moved_from", str)


@migrations()
def m005_notify_dm(db: sqlite_utils.Database) -> None:
    db["launches"].add_column("notify_dm", int, not_null_default=0)


@migrations()
def m006_audit_and_held_credentials(db: sqlite_utils.Database) -> None:
    # Every action a person takes or is refused, for the operator (`taobot audit`). Never a secret value.
    db["audit"].create(
        {
            "id": int,
            "at": float,
            "actor": str,
            "channel": str,
            "intake_id": str,
            "action": str,
            "allowed": int,
            "reason": str,
            "detail": str,
        },
        pk="id",
    )
    db["audit"].create_index(["at"])
    db["audit"].create_index(["actor", "at"])
    # The credential values one launch thread uses, held per thread by fingerprint: a value the person changes
    # in another thread never reaches a launch whose preflight checked the old one.
    db["held_credentials"].create(
        {"intake_id": str, "name": str, "ciphertext": bytes, "fingerprint": str, "secret": int, "held_at": float},
        pk=("intake_id", "name"),
        foreign_keys=[("intake_id", "intakes", "id")],
    )


@migrations()
def m007_ssh_identities(db: sqlite_utils.Database) -> None:
    # Each person's taobot-made SSH key pair (per cluster when TAOBOT_SSH_KEY_PER_CLUSTER; "" otherwise): the
    # private half encrypted like a secret, the public half and its SHA256 fingerprint in the clear.
    db["ssh_identities"].create(
        {
            "owner": str,
            "cluster": str,
            "public_key": str,
            "fingerprint": str,
            "ciphertext": bytes,
            "created_at": float,
        },
        pk=("owner", "cluster"),
    )
    # Login-node host keys a person trusted on first use (TAOBOT_SSH_TOFU): exactly this key for this host.
    db["trusted_host_keys"].create(
        {
            "host": str,  # as known_hosts names it: `name` or `[name]:port`
            "key_type": str,
            "key_base64": str,
            "fingerprint": str,
            "trusted_by": str,
            "trusted_at": float,
        },
        pk=("host", "key_type"),
    )


@migrations()
def m008_cleanup(db: sqlite_utils.Database) -> None:
    # What an ended launch left on its platform that holds its secrets (an env file, a Secret, per-launch secrets)
    # is removed once; `cleaned_at` records that, so a restart neither skips nor repeats it. A failed removal is
    # tried again at `cleanup_retry_at`, at most cleanup.CLEANUP_ATTEMPTS times; `cleanup_error` says why (no secret).
    # Launches that ended before this migration have none of these set: they are cleaned up too.
    db["launches"].add_column("cleaned_at", float)
    db["launches"].add_column("cleanup_attempts", int, not_null_default=0)
    db["launches"].add_column("cleanup_retry_at", float)
    db["launches"].add_column("cleanup_error", str)


@migrations()
def m009_retry_and_triage(db: sqlite_utils.Database) -> None:
    # A launch started by *Retry* (or an automatic retry) names the launch it retries; a chain is followed
    # through these links (taobot.triage.MAX_CHAIN launches at most).
    db["launches"].add_column("retry_of", str)
    db["launches"].create_index(["retry_of"])
    # The failure triage, worked out once when the launch failed, so the final reply, a re-sent one and the
    # *Retry* button all read the same verdict: its kind, its cause, the deciding line, a traceback's frames (JSON).
    db["launches"].add_column("failure_kind", str)
    db["launches"].add_column("failure_cause", str)
    db["launches"].add_column("failure_line", str)
    db["launches"].add_column("failure_frames", str)


@migrations()
def m012_workflows(db: sqlite_utils.Database) -> None:
    # A workflow thread's own answers beside its intake: which workflow, fitted to which model (the plan, JSON),
    # each stage's image, where the run stands, and its pipeline card.
    db["workflow_runs"].create(
        {
            "intake_id": str,
            "workflow": str,
            "model": str,
            "plan": str,  # JSON: the stages that run and the sentences about those left out
            "images": str,  # JSON: workflow stage name -> {default, source, chosen, overridden}
            "status": str,  # collecting, running, stopped, done, cancelled
            "run": int,  # 1, then one more at each *Resume from here*
            "start_index": int,  # the stage this run starts from
            "card_ts": str,
            "updated_at": float,
        },
        pk="intake_id",
    )
    # One row per stage started in a run, written BEFORE its launch is submitted: the primary key is what makes
    # "start the next stage" happen once, whoever (a monitor cycle, a restart) asks.
    db["workflow_stages"].create(
        {
            "intake_id": str,
            "run": int,
            "idx": int,
            "name": str,
            "launch_id": str,
            "state": str,  # starting, running, succeeded, failed, skipped
            "results": str,
            "checkpoint": str,
            "metrics": str,  # JSON: metric name -> value
            "note": str,
            "started_at": float,
            "ended_at": float,
        },
        pk=("intake_id", "run", "idx"),
    )
    db["workflow_stages"].create_index(["launch_id"])


@migrations()
def m010_output_watch(db: sqlite_utils.Database) -> None:
    # Whether a running job's log still grows (taobot.stuck.OutputWatch): the log's mark when it last changed and
    # when that was, written once a silent stretch begins, so a restarted bot goes on counting the same silence
    # (the "no output for N min" line keeps its minutes; the once-only mention is the SILENT_SLOT claim). One row
    # per running launch; the row goes when the launch ends.
    db["output_watch"].create({"launch_id": str, "mark": str, "changed_at": float}, pk="launch_id")


@migrations()
def m011_automl(db: sqlite_utils.Database) -> None:
    # One row per AutoML thread: its plan (taobot.automl.plan, JSON), the engine's journal of calls (a restart
    # rebuilds the engine from it), the experiment card and the final reply, once.
    db["automl_experiments"].create(
        {
            "intake_id": str,
            "plan": str,
            "status": str,  # planning, running, done, cancelled
            "journal": str,  # JSON list: ["ask", [ids]] and ["tell", id, metric], in order
            "card_ts": str,
            "started_by": str,
            "started_at": float,
            "ended_at": float,
            "final_ts": str,
            "note": str,  # why the search stopped early, when it did
            "updated_at": float,
        },
        pk="intake_id",
    )
    # One row per trial, written BEFORE its launch is submitted; (intake_id, rec_id) is unique, so one engine
    # recommendation is one trial, and the trial's launch id is made from its number (never launched twice).
    db["automl_trials"].create(
        {
            "intake_id": str,
            "number": int,
            "rec_id": int,
            "trial": str,  # JSON: taobot.automl.trials.Trial
            "state": str,
            "launch_id": str,
        },
        pk=("intake_id", "number"),
    )
    db["automl_trials"].create_index(["intake_id", "rec_id"], unique=True)
    db["automl_trials"].create_index(["launch_id"])
    # A train thread opened with *Train with these values*: the best trial's values go into its spec at launch.
    db["automl_prefills"].create(
        {"intake_id": str, "from_intake": str, "trial": int, "overrides": str, "at": float}, pk="intake_id"
    )


@migrations()
def m011_automl_summaries(db: sqlite_utils.Database) -> None:
    # A running search's interval update: the last slot claimed (slot n covers [start + n·interval, …)) and the
    # ts of its post once Slack confirmed it; a claimed slot without a ts is looked for in the thread (by its
    # metadata) before it is posted, so a restart neither doubles nor skips one.
    db["automl_experiments"].add_column("summary_slot", int)
    db["automl_experiments"].add_column("summary_ts", str)
