"""Training progress from what TAO writes: its status file's JSON records and the metric lines of its log.

Pure: text in, a `Progress` value out; no I/O. The backends fetch the text (one read per platform and cycle,
see `taobot.backends`), the monitor hands the value to the update views.

What TAO writes (read for facts in TAO's own status loggers; this parser is taobot's):

- Every record is one JSON object per line with `date` (`M/D/YYYY`), `time` (`H:M:S`, not zero-padded),
  `status` (STARTED, RUNNING, SUCCESS, FAILURE, SKIPPED), `verbosity` and `message`, and may carry `kpi`,
  `graphical` and `categorical` dicts. Values in them are numbers, numbers as strings, or `{"value": x}`.
- An epoch record has `epoch`, `max_epoch`, `time_per_epoch` and `eta` (Python `timedelta` text,
  `0:01:23.456789`, `1 day, 2:03:04`). The PyTorch callbacks of today count from 0 (`epoch` is
  `trainer.current_epoch`, `max_epoch` is `max_epochs - 1`) and also write `step` and `max_step`; older
  PyTorch and the TensorFlow callbacks count from 1 (`max_epoch` is the number of epochs) and put the
  epoch's own losses in `graphical` and its accuracy and mAP in `kpi` of that same record.
  Iteration-based networks write `cur_iter`/`max_iter` and `time_per_iter` instead.
- The logger keeps its last `kpi`/`graphical` dict and repeats it on every later record until a new one is
  set, so a dict equal to the one before is a repetition, not news. In PyTorch a run's epoch writes
  "Eval metrics generated." (`val_*` kpi) before its epoch record, and "Train metrics generated."
  (`train_loss`) after it.

Log lines give what the status file does not have (the last checkpoint saved) and, where the bot cannot
read the results folder (a Kubernetes PVC, s3, Lepton), everything: `epoch 3/10`, `loss=0.41`,
`val_loss: 0.5`, PyTorch Lightning's `saving model to '…/model_epoch_002.pth'`, and status records echoed
to the log.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime

FROM_FILE = "TAO's status file"
FROM_LOG = "the log"
FROM_BOTH = "TAO's status file and the log"

# The names a training loss goes by, best first.
TRAIN_LOSS_KEYS = ("train_loss", "loss", "training_loss", "total_loss", "train_loss_epoch")
# Keys that are no metric of the model (schedules, counters, clocks).
NOT_METRICS = re.compile(
    r"(?i)^((lr|learning_rate)([-_/ ].*)?|.*[-_/ ](lr|learning_rate)|.*epoch.*|.*step.*|.*time.*|eta|v_num)$"
)
MAX_METRICS = 6  # validation metrics kept per epoch
MAX_EPOCHS = 1000  # epochs kept in a Progress (the status file read is bounded anyway)

_DURATION = re.compile(r"^\s*(?:(\d+) days?, )?(\d+):(\d{1,2}):(\d{1,2}(?:\.\d+)?)\s*$")
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
# `epoch 3/10`, `Epoch 3 of 10`, `[epoch 3/10]`
_EPOCH_OF = re.compile(r"(?i)\bepoch\s*[:=]?\s*(\d+)\s*(?:/|of)\s*(\d+)")
# PyTorch Lightning's progress bar: `Epoch 3: 100%|…` (counted from 0)
_EPOCH_BAR = re.compile(r"\bEpoch (\d+):")
_METRIC_NAME = re.compile(r"(?i)(loss|acc|accuracy|map|ap50|ap75|\bap\b|iou|f1|precision|recall|auc|psnr|ssim|fid)")
_PAIR = re.compile(rf"(?<![\w./-])([A-Za-z][\w./-]*?)\s*[=:]\s*({_NUMBER})(?![\w.:])")
_CHECKPOINT_WORDS = re.compile(r"(?i)(checkpoint|saving model|saved model|model saved)")
_CHECKPOINT_PHRASE = re.compile(
    r"(?i)(?:saving model to|saved model to|saved checkpoint(?: to| at)?|saving checkpoint(?: to| at)?|"
    r"checkpoint saved(?: to| at)?)\s*:?\s*['\"]?((?:/|s3://|gs://)[^\s'\"]+)"
)
_CHECKPOINT_FILE = re.compile(r"((?:/|s3://|gs://)[^\s'\"]+\.(?:pth|ckpt|pt|tlt|hdf5|h5|safetensors))\b")


@dataclass(frozen=True)
class EpochResult:
    """What one epoch reported: its training loss and its validation metrics."""

    epoch: int  # counted from 1
    train_loss: float | None = None
    validation: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class Progress:
    """How far a training run is and how it is doing, as far as what it wrote says."""

    source: str  # FROM_FILE, FROM_LOG or FROM_BOTH
    unit: str = "epoch"  # "iteration" for iteration-based networks
    done: int | None = None  # epochs (iterations) done, counted from 1
    total: int | None = None
    train_loss: float | None = None  # the latest one
    loss_name: str | None = None
    validation: tuple[tuple[str, float], ...] = ()  # the latest validation metrics
    validation_epoch: int | None = None  # the epoch they belong to (None: not per epoch, e.g. an evaluation)
    time_per_epoch_s: float | None = None
    eta_s: float | None = None
    checkpoint: str | None = None  # the last checkpoint the log says was saved
    epochs: tuple[EpochResult, ...] = ()  # each epoch's results, oldest first
    final: str | None = None  # SUCCESS or FAILURE when the status file has a final record
    message: str | None = None  # the last record's message

    @property
    def known(self) -> bool:
        """Anything worth showing."""
        return any(
            v not in (None, ())
            for v in (self.done, self.train_loss, self.validation, self.checkpoint, self.time_per_epoch_s)
        )

    @property
    def finished_training(self) -> bool:
        return self.done is not None and self.total is not None and self.done >= self.total


# --------------------------------------------------------------------------- values


def number(value: object) -> float | None:
    """A metric value: a number, a number as text, or TAO's `{"value": x}`; NaN and infinities are no value."""
    if isinstance(value, dict):
        value = value.get("value")
    if isinstance(value, bool) or value is None:
        return None
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def duration_s(value: object) -> float | None:
    """`0:01:23.456789`, `2 days, 0:00:01`, or seconds as a number -> seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) if value >= 0 else None
    match = _DURATION.match(str(value or ""))
    if not match:
        return None
    days, hours, minutes, seconds = match.groups()
    return int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _integer(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def kind_of(key: str) -> str | None:
    """ "train", "val" or None (not a metric): how a kpi/graphical/log key is read."""
    name = key.strip()
    if not name or NOT_METRICS.match(name):
        return None
    low = name.lower()
    if low.startswith(("train", "training")) or low in TRAIN_LOSS_KEYS:
        return "train"
    return "val"


def train_loss_of(metrics: dict[str, float]) -> tuple[str, float] | None:
    for key in TRAIN_LOSS_KEYS:
        if key in metrics:
            return key, metrics[key]
    for key, value in metrics.items():
        if "loss" in key.lower():
            return key, value
    return None


def _metrics(raw: dict) -> tuple[dict[str, float], dict[str, float]]:
    """(training, validation) metrics of one kpi/graphical dict."""
    train: dict[str, float] = {}
    val: dict[str, float] = {}
    for key, value in raw.items():
        kind = kind_of(str(key))
        got = number(value) if kind else None
        if got is not None:
            (train if kind == "train" else val)[str(key)] = got
    return train, val


def _timestamp(record: dict) -> float | None:
    try:
        return datetime.strptime(f"{record.get('date')} {record.get('time')}", "%m/%d/%Y %H:%M:%S").timestamp()
    except (TypeError, ValueError):
        return None


# --------------------------------------------------------------------------- records


def json_records(lines: Iterable[str]) -> list[dict]:
    """The JSON objects among `lines` (lines that are not one are skipped)."""
    out = []
    for line in lines:
        text = line.strip()
        if not text.startswith("{"):
            continue
        try:
            doc = json.loads(text)
        except ValueError:
            continue
        if isinstance(doc, dict):
            out.append(doc)
    return out


@dataclass
class _Run:
    """What the records say so far, while they are read."""

    unit: str = "epoch"
    done: int = 0
    total: int | None = None
    per_epoch: dict[int, dict[str, dict[str, float]]] = field(default_factory=dict)
    latest_train: tuple[str, float] | None = None
    latest_val: tuple[int | None, dict[str, float]] | None = None
    time_per_epoch: float | None = None
    eta: float | None = None
    final: str | None = None
    message: str | None = None
    stamps: list[tuple[int, float]] = field(default_factory=list)  # (epochs done, when) from records' clocks

    def add(self, epoch: int, train: dict[str, float], val: dict[str, float]) -> None:
        slot = self.per_epoch.setdefault(epoch, {"train": {}, "val": {}})
        slot["train"].update(train)
        slot["val"].update(val)
        if train and train_loss_of(train):
            self.latest_train = train_loss_of(train)
        if val:
            self.latest_val = (epoch, val)


def _read_records(records: list[dict]) -> _Run:
    run = _Run()
    with_epoch = [r for r in records if _integer(r.get("epoch")) is not None]
    if not with_epoch and any(_integer(r.get("cur_iter")) is not None for r in records):
        run.unit = "iteration"
    counter, limit, per = ("epoch", "max_epoch", "time_per_epoch")
    if run.unit == "iteration":
        counter, limit, per = ("cur_iter", "max_iter", "time_per_iter")
    # Today's PyTorch callbacks count from 0 (and write steps); epoch 0 can only be counted from 0.
    zero_based = run.unit == "epoch" and any(
        "max_step" in r or "step" in r or _integer(r.get("epoch")) == 0 for r in with_epoch
    )
    last: dict[str, object] = {}
    for record in records:
        status = str(record.get("status", "")).upper()
        if record.get("message"):
            run.message = str(record["message"])
        if status == "SUCCESS" or status in ("FAILURE", "FAILED", "ERROR"):
            run.final = "SUCCESS" if status == "SUCCESS" else "FAILURE"
        raw = _integer(record.get(counter))
        at: int | None = None
        if raw is not None:
            at = raw + 1 if zero_based else raw
            run.done = at
            top = _integer(record.get(limit))
            if top is not None:
                run.total = top + 1 if zero_based else top
            run.time_per_epoch = duration_s(record.get(per)) or run.time_per_epoch
            eta = duration_s(record.get("eta"))
            run.eta = eta if eta is not None else run.eta
            stamp = _timestamp(record)
            if stamp is not None:
                run.stamps.append((at, stamp))
        train: dict[str, float] = {}
        val: dict[str, float] = {}
        for name in ("kpi", "graphical"):  # a name both give is kpi's
            value = record.get(name)
            if not isinstance(value, dict) or not value:
                continue
            repeated = value == last.get(name)
            last[name] = value
            if repeated:
                continue  # the logger repeats its last dict on every record: not this record's news
            more_train, more_val = _metrics(value)
            train = {**more_train, **train}
            val = {**more_val, **val}
        if not train and not val:
            continue
        if at is not None:
            target = at
        elif train:
            target = max(run.done, 1)  # "Train metrics generated." follows its epoch's record
        else:  # validation runs before its epoch's record is written
            target = run.done + 1 if run.total is None or run.done < run.total else run.done
        run.add(max(target, 1), train, val)
    return run


def _from_records(records: list[dict]) -> Progress | None:
    if not records:
        return None
    run = _read_records(records)
    per_epoch = run.done > 0 or bool(run.total)
    tpe = run.time_per_epoch
    if tpe is None and len(run.stamps) >= 2:
        (first_n, first_t), (last_n, last_t) = run.stamps[0], run.stamps[-1]
        if last_n > first_n and last_t >= first_t:
            tpe = (last_t - first_t) / (last_n - first_n)
    eta = run.eta
    if eta is None and tpe is not None and run.total is not None and run.done:
        eta = max(0.0, (run.total - run.done) * tpe)
    epochs = tuple(
        EpochResult(
            n,
            (train_loss_of(slot["train"]) or (None, None))[1],
            tuple(list(slot["val"].items())[:MAX_METRICS]),
        )
        for n, slot in sorted(run.per_epoch.items())[-MAX_EPOCHS:]
    )
    val_epoch, val = run.latest_val if run.latest_val else (None, {})
    return Progress(
        source=FROM_FILE,
        unit=run.unit,
        done=run.done or None,
        total=run.total,
        train_loss=run.latest_train[1] if run.latest_train else None,
        loss_name=run.latest_train[0] if run.latest_train else None,
        validation=tuple(list(val.items())[:MAX_METRICS]),
        validation_epoch=val_epoch if per_epoch else None,
        time_per_epoch_s=tpe,
        eta_s=eta,
        epochs=epochs if per_epoch else (),
        final=run.final,
        message=run.message,
    )


# --------------------------------------------------------------------------- log lines


def _segments(lines: Iterable[str]) -> list[str]:
    """Log lines, with a progress bar's carriage-return updates as lines of their own."""
    out = []
    for line in lines:
        out += [part for part in str(line).split("\r") if part.strip()]
    return out


def checkpoint_in(line: str) -> str | None:
    """The checkpoint a log line says was saved, if it says so."""
    if not _CHECKPOINT_WORDS.search(line):
        return None
    match = _CHECKPOINT_PHRASE.search(line) or _CHECKPOINT_FILE.search(line)
    return match.group(1).rstrip(".,;:)'\"") if match else None


_LineFacts = tuple  # (checkpoint saved, echoed record, epoch, total, training metrics, validation metrics)


def _line_facts(line: str) -> _LineFacts:
    """What one log line says, read on its own (the same line twice is read once: see `_from_log`)."""
    saved = checkpoint_in(line)
    if saved:
        return saved, False, None, None, {}, {}
    if line.lstrip().startswith("{"):
        return None, True, None, None, {}, {}  # a record echoed to the log: read as a record
    epoch = total = None
    match = _EPOCH_OF.search(line)
    if match:
        epoch, total = int(match.group(1)), int(match.group(2))
    else:
        bar = _EPOCH_BAR.search(line)
        epoch = int(bar.group(1)) + 1 if bar else None
    pairs = {k: v for k, v in _PAIR.findall(line) if _METRIC_NAME.search(k)}
    train, val = _metrics(pairs)
    return None, False, epoch, total, train, val


def _from_log(lines: list[str]) -> Progress | None:
    run = _Run()
    checkpoint = None
    echoed = json_records(line[line.find("{") :] for line in lines if '"status"' in line and "{" in line)
    # A poll brings the log's metric lines and its last lines, which overlap: each distinct line is read once.
    read: dict[str, _LineFacts] = {}
    for line in lines:
        facts = read.get(line)
        if facts is None:
            facts = read[line] = _line_facts(line)
        saved, is_record, epoch, total, train, val = facts
        if saved:
            checkpoint = saved
            continue
        if is_record:
            continue  # read as a record below
        if total is not None:
            run.total = total
        if epoch is not None:
            run.done = epoch
        if (train or val) and (epoch is not None or run.done):
            run.add(epoch or run.done, train, val)
        elif train or val:  # metrics with no epoch in sight: the latest values only
            if train_loss_of(train):
                run.latest_train = train_loss_of(train)
            if val:
                run.latest_val = (None, val)
    from_records = _from_records(echoed)
    if from_records is not None and from_records.known:
        return replace(from_records, source=FROM_LOG, checkpoint=checkpoint)
    if not (run.done or run.latest_train or run.latest_val or checkpoint):
        return None
    val_epoch, val = run.latest_val if run.latest_val else (None, {})
    return Progress(
        source=FROM_LOG,
        done=run.done or None,
        total=run.total,
        train_loss=run.latest_train[1] if run.latest_train else None,
        loss_name=run.latest_train[0] if run.latest_train else None,
        validation=tuple(list(val.items())[:MAX_METRICS]),
        validation_epoch=val_epoch,
        checkpoint=checkpoint,
        epochs=tuple(
            EpochResult(n, (train_loss_of(s["train"]) or (None, None))[1], tuple(list(s["val"].items())[:MAX_METRICS]))
            for n, s in sorted(run.per_epoch.items())[-MAX_EPOCHS:]
        ),
    )


# --------------------------------------------------------------------------- both


def read_progress(status_lines: Iterable[str] = (), log_lines: Iterable[str] = ()) -> Progress | None:
    """Progress from TAO's status file (JSON lines) and log lines; None when neither says anything.

    The status file wins for what it has; the log adds the checkpoint, and everything else when there is no
    status file to read."""
    from_file = _from_records(json_records(status_lines))
    from_log = _from_log(_segments(log_lines))
    if from_file is None or not (from_file.known or from_file.final):
        return from_log
    if from_log is None:
        return from_file
    loss_from_log = from_file.train_loss is None and from_log.train_loss is not None
    if not (from_log.checkpoint or loss_from_log):
        return from_file
    return replace(
        from_file,
        source=FROM_BOTH,
        checkpoint=from_log.checkpoint,
        train_loss=from_log.train_loss if loss_from_log else from_file.train_loss,
        loss_name=from_log.loss_name if loss_from_log else from_file.loss_name,
    )
