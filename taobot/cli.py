"""`taobot` console script: serve, console, platforms, image, status.

Errors become one clear line on stderr and a non-zero exit code:
1 for an unexpected failure, 2 for bad input or configuration.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from taobot.errors import TaobotError

EXIT_BAD_INPUT = 2


def _defer_import(name: str) -> None:
    """Import `name` only when one of its attributes is first used (paramiko's `invoke`, see cmd_preflight)."""
    import importlib.util
    import types

    if name in sys.modules or importlib.util.find_spec(name) is None:
        return

    class OnFirstUse(types.ModuleType):
        def __getattr__(self, attribute: str):  # only for what the stand-in lacks: the real module's names
            sys.modules.pop(name, None)
            self.__dict__.update(vars(importlib.import_module(name)))
            return getattr(sys.modules[name], attribute)

    sys.modules[name] = OnFirstUse(name)


def _settings(args: argparse.Namespace):
    from taobot.config import load_settings

    overrides = {}
    if getattr(args, "db", None):
        overrides["db_path"] = args.db
    return load_settings(**overrides)


def _catalog(settings):
    from taobot.catalog import load_catalog, with_operator_defaults

    return with_operator_defaults(load_catalog(settings.skill_bank_path), settings.default_status_interval_minutes)


def _store(settings):
    import os

    from taobot.errors import ConfigError
    from taobot.secrets import SecretBox, load_or_create_key
    from taobot.store import Store

    folder = settings.db_path.resolve().parent
    if not folder.is_dir() and not folder.parent.exists():
        raise ConfigError(f"TAOBOT_DB: folder {folder} does not exist", "TAOBOT_DB")
    if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(
            f"TAOBOT_DB: folder {folder} is not writable by this user (the database and its WAL files live there)",
            "TAOBOT_DB",
        )
    secret = settings.secret_key.get_secret_value() if settings.secret_key else None
    key = load_or_create_key(secret, settings.key_file)
    store = Store(settings.db_path, SecretBox(key))
    store.load_redactions()
    return store


# --------------------------------------------------------------------------- platforms / image


def cmd_platforms(args: argparse.Namespace) -> int:
    from taobot.catalog import find_platform
    from taobot.catalog.listing import platform_data, platform_text, platforms_data, platforms_text

    catalog = _catalog(_settings(args))
    if args.platform:
        platform = find_platform(catalog, args.platform)
        if args.format == "json":
            print(json.dumps(platform_data(catalog, platform), indent=2))
        else:
            print(platform_text(catalog, platform))
        return 0
    if args.format == "json":
        print(json.dumps(platforms_data(catalog), indent=2))
    else:
        print(platforms_text(catalog))
    return 0


def cmd_image(args: argparse.Namespace) -> int:
    from taobot.catalog import find_action, find_model, resolve_image

    catalog = _catalog(_settings(args))
    model = find_model(catalog, args.model)
    action = find_action(model, args.action)
    resolved = resolve_image(catalog, model, action)
    if args.format == "json":
        print(
            json.dumps(
                {
                    "model": model.name,
                    "action": action.name,
                    "image": resolved.image,
                    "source": resolved.source,
                    "versions_key": resolved.key,
                    "access": resolved.access,
                    "catalog": catalog.description,
                },
                indent=2,
            )
        )
    else:
        via = f" via versions key {resolved.key}" if resolved.key else ""
        print(f"Container image for {model.name}/{action.name}: default={resolved.image}")
        print(f"  from {resolved.source}{via} ({catalog.description})")
        if resolved.access:
            print(f"  access: {resolved.access}")
    return 0


# --------------------------------------------------------------------------- operations


def cmd_backup(args: argparse.Namespace) -> int:
    settings = _settings(args)
    store = _store(settings)
    store.backup(args.path)
    print(f"Backed up {settings.db_path} to {args.path}.")
    print(
        "The backup's credentials are encrypted: keep the encryption key "
        + ("(TAOBOT_SECRET_KEY)" if settings.secret_key else f"({settings.key_file})")
        + " safe, separately; without it they cannot be read."
    )
    return 0


def cmd_rotate_key(args: argparse.Namespace) -> int:
    import os
    import tempfile

    from cryptography.fernet import Fernet

    from taobot.scheduler import LEASE
    from taobot.secrets import SecretBox, load_or_create_key

    settings = _settings(args)
    if not settings.secret_key and not settings.key_file.exists():
        print(
            f"taobot: no encryption key at {settings.key_file} and TAOBOT_SECRET_KEY is unset: nothing to rotate.",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    store = _store(settings)  # opens with the OLD key; every secret must decrypt with it
    holder = store.lease_holder(LEASE)
    if holder and not args.force:
        print(
            f"taobot: a running taobot ({holder[0]}) uses this database. Stop it first (or pass --force if it is gone).",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    if args.new_key_file:
        new_key = load_or_create_key(None, Path(args.new_key_file))
    else:
        new_key = Fernet.generate_key()
    count = store.reencrypt(SecretBox(new_key))
    if settings.secret_key:
        out = Path(args.new_key_file) if args.new_key_file else None
        if out is None:
            fd, name = tempfile.mkstemp(prefix="taobot-new-key-", dir=str(settings.db_path.parent))
            os.write(fd, new_key + b"\n")
            os.close(fd)
            out = Path(name)
        print(
            f"Re-encrypted {count} secret(s). Set TAOBOT_SECRET_KEY to the new key in {out} (mode 0600) before the next start."
        )
    else:
        tmp = settings.key_file.with_name(settings.key_file.name + ".new")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(new_key + b"\n")
        os.replace(tmp, settings.key_file)
        print(f"Re-encrypted {count} secret(s) and replaced {settings.key_file} with the new key.")
    return 0


# --------------------------------------------------------------------------- preflight


def _label_values(items: list[str], flag: str) -> list[tuple[str, str]]:
    pairs = []
    for item in items or []:
        label, sep, value = item.partition("=")
        if not sep or not label or not value:
            raise ValueError(f"{flag} expects LABEL=VALUE; got `{item}`")
        pairs.append((label, value))
    return pairs


def cmd_preflight(args: argparse.Namespace) -> int:
    # paramiko imports invoke as it loads, only to run an ssh_config's `Match exec` lines; invoke (with asyncio and
    # unittest.mock) was a fifth of this command's time. It loads when such a line is met.
    _defer_import("invoke")
    from taobot.catalog import find_model, find_platform
    from taobot.config import credentials_from_environment
    from taobot.preflight import DatasetPath, PreflightRequest, run_preflight

    settings = _settings(args)
    catalog = _catalog(settings)
    platform = find_platform(catalog, args.platform)
    try:
        paths = _label_values(args.path, "--path")
        fields = {
            label: tuple(f for f in value.split(",") if f)
            for label, value in _label_values(args.json_required_field, "--json-required-field")
        }
    except ValueError as exc:
        print(f"taobot: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    unknown = set(fields) - {label for label, _ in paths}
    if unknown:
        print(
            f"taobot: --json-required-field names labels without a --path: {', '.join(sorted(unknown))}",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    env = credentials_from_environment(list(catalog.credentials) + ["SLURM_TIME_HOURS", "SLURM_TIMEOUT_HOURS"])
    required = list(platform.required_credentials)
    for group in platform.credential_groups:
        present = [m for m in group.one_of if env.get(m)]
        required.append(present[0] if present else group.preferred)
    if args.model:
        required += list(find_model(catalog, args.model).credentials)
    if any(v.startswith("s3://") for _, v in paths) or (args.results or "").startswith("s3://"):
        required += list(catalog.s3_required)
    request = PreflightRequest(
        platform=platform.name,
        credentials=env,
        paths=tuple(DatasetPath(label, value, fields.get(label, ())) for label, value in paths),
        results_uri=args.results,
        resources=platform.resources,
        settings=settings.platform_settings(on_persons_machine=True),  # the person's own machine and keys
        skip_platform_access=args.skip_platform_access,
    )
    if args.skip_platform_access:
        print(
            "DRY CHECK (--skip-platform-access): variables and local paths only. This is NOT a launch preflight; "
            "nothing was verified from the platform's point of view."
        )
    report = run_preflight(request, tuple(dict.fromkeys(required)))
    for r in report.results:
        print(f"{'PASS' if r.ok else 'FAIL'}  {r.label}: {r.detail}")
        if not r.ok and r.remediation:
            for line in r.remediation.splitlines():
                print(f"      {line}")
    failures = report.failures()
    if args.skip_platform_access:
        print(f"TAO launch preflight not run (dry check only): {len(failures)} problem(s) found")
        return 0 if not failures else EXIT_BAD_INPUT
    print("TAO launch preflight passed" if report.passed else "TAO launch preflight failed")
    return 0 if report.passed else EXIT_BAD_INPUT


# --------------------------------------------------------------------------- status / console / serve


def cmd_status(args: argparse.Namespace) -> int:
    import time

    from taobot.catalog import find_platform
    from taobot.view_text import channel_status_text, intake_detail_text
    from taobot.views import ChannelEntry, ChannelStatus, IntakeDetail, intake_facts

    settings = _settings(args)
    catalog = _catalog(settings)
    store = _store(settings)
    if args.id:
        matches = store.find_intake_by_prefix(args.id)
        if not matches:
            print(f"No launch {args.id} in {settings.db_path}.", file=sys.stderr)
            return EXIT_BAD_INPUT
        print(intake_detail_text(IntakeDetail(intake_facts(matches[0], catalog), time.time())))
    else:
        intakes = store.recent_intakes(limit=40)
        entries = tuple(
            ChannelEntry(s, find_platform(catalog, s.platform).display_name if s.platform else "—", None)
            for s in intakes
        )
        print(channel_status_text(ChannelStatus(entries, len(entries), time.time())))
    return 0


def parse_since(text: str, now: float) -> float:
    """`30m`, `2h`, `7d` before now, or an ISO date/time (UTC when it names no zone), as a Unix time."""
    import datetime as dt
    import re

    match = re.fullmatch(r"(\d+)\s*([smhd])", text.strip())
    if match:
        return now - int(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"--since {text!r}: expected 30m, 2h, 7d or a date such as 2026-12-01T09:00") from None
    return (when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)).timestamp()


def audit_line(row: dict) -> str:
    import datetime as dt

    when = dt.datetime.fromtimestamp(row["at"], dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    outcome = "allowed" if row["allowed"] else f"REFUSED: {row['reason']}"
    detail = "" if row["detail"] in (None, "{}") else f"  {row['detail']}"
    where = f"{row['channel'] or '-'} {row['intake_id'] or '-'}"
    return f"{when}  {row['actor']:<12} {where:<24} {row['action']:<18} {outcome}{detail}"


def cmd_audit(args: argparse.Namespace) -> int:
    import time

    try:
        since = parse_since(args.since, time.time()) if args.since else None
    except ValueError as exc:
        print(f"taobot: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    store = _store(_settings(args))
    rows = store.audit_rows(since=since, actor=args.user, limit=args.limit)
    for row in rows:
        print(audit_line(row))
    if not rows:
        print("No audit rows match.", file=sys.stderr)
    return 0


def cmd_console(args: argparse.Namespace) -> int:
    from taobot.console import run_console
    from taobot.policy import policy_for

    settings = _settings(args)
    catalog = _catalog(settings)
    policy = policy_for(settings, catalog, console=True)
    # the person's own machine: their key files, agent and SSH config are theirs
    platform = settings.platform_settings(on_persons_machine=True)
    store = _store(settings)
    return run_console(store, catalog, args.model, args.action, resume=args.resume, policy=policy, settings=platform)


def cmd_serve(args: argparse.Namespace) -> int:
    from taobot import logs

    settings = _settings(args)
    missing = settings.missing_for_serve(http=args.http)
    if missing:
        mode = "HTTP mode" if args.http else "Socket Mode"
        print(
            f"taobot serve ({mode}) needs {', '.join(missing)}. Set them as described in the README "
            "(create the Slack app from manifest.yml), or try the intake without Slack: `taobot console`.",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    logs.configure(settings.log_level, settings.log_format)
    from taobot.policy import policy_for
    from taobot.slack.app import build_app
    from taobot.slack.serve import serve_health_in_background, serve_http, serve_socket_mode

    catalog = _catalog(settings)
    policy = policy_for(settings, catalog)  # a bad policy file stops the bot here, before anything starts
    runtime = build_app(settings, _store(settings), catalog, http=args.http, policy=policy)
    import signal

    def on_sigterm(signum, frame):  # stop taking work, let the scheduler finish its cycle, exit
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    runtime.start_monitoring()
    try:
        if args.http:
            serve_http(runtime, args.host, args.port)
        else:
            serve_health_in_background(runtime, settings.health_host, settings.health_port)
            serve_socket_mode(runtime, settings.slack_app_token.get_secret_value())
    except KeyboardInterrupt:
        pass
    finally:
        runtime.stop()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="taobot", description="Launch and watch NVIDIA TAO jobs from Slack.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the Slack bot (Socket Mode, or --http)")
    serve.add_argument("--http", action="store_true", help="HTTP mode: serve /slack/events instead of Socket Mode")
    serve.add_argument("--port", type=int, default=3000)
    serve.add_argument("--host", default="127.0.0.1", help="address to bind in HTTP mode (default 127.0.0.1)")
    serve.add_argument("--db", help="database path (default TAOBOT_DB)")
    serve.set_defaults(func=cmd_serve)

    console = sub.add_parser("console", help="run the launch intake in this terminal, without Slack")
    console.add_argument("--model", help="TAO network, e.g. cosmos-rl")
    console.add_argument("--action", default="train")
    console.add_argument("--resume", help="continue an earlier console intake by id")
    console.add_argument("--db", help="database path (default TAOBOT_DB)")
    console.set_defaults(func=cmd_console)

    platforms = sub.add_parser("platforms", help="list execution platforms, or show one")
    platforms.add_argument("--platform", help="platform name or alias")
    platforms.add_argument("--format", choices=("text", "json"), default="text")
    platforms.set_defaults(func=cmd_platforms)

    image = sub.add_parser("image", help="show the default container image for a model and action")
    image.add_argument("--model", required=True)
    image.add_argument("--action", required=True)
    image.add_argument("--format", choices=("text", "json"), default="text")
    image.set_defaults(func=cmd_image)

    preflight = sub.add_parser("preflight", help="check launch conditions from the platform's point of view")
    preflight.add_argument("--platform", required=True)
    preflight.add_argument("--path", action="append", default=[], metavar="LABEL=PATH", help="a dataset path to verify")
    preflight.add_argument(
        "--json-required-field",
        action="append",
        default=[],
        metavar="LABEL=F1,F2",
        help="fields every sampled record of that JSON file must have",
    )
    preflight.add_argument("--results", help="results location to check")
    preflight.add_argument("--model", help="also require this model's credentials (e.g. HF_TOKEN)")
    preflight.add_argument(
        "--skip-platform-access",
        action="store_true",
        help="dry check of variables and local paths only; NOT a launch preflight",
    )
    preflight.set_defaults(func=cmd_preflight)

    backup = sub.add_parser("backup", help="online backup of the database to PATH")
    backup.add_argument("path")
    backup.add_argument("--db", help="database path (default TAOBOT_DB)")
    backup.set_defaults(func=cmd_backup)

    rotate = sub.add_parser(
        "rotate-key", help="re-encrypt stored credentials under a new key (the current key is required)"
    )
    rotate.add_argument("--new-key-file", help="take the new key from (or write a new one to) this file")
    rotate.add_argument("--force", action="store_true", help="rotate even though a bot's scheduler lease is still live")
    rotate.add_argument("--db", help="database path (default TAOBOT_DB)")
    rotate.set_defaults(func=cmd_rotate_key)

    status = sub.add_parser("status", help="launches recorded in the database")
    status.add_argument("id", nargs="?")
    status.add_argument("--db", help="database path (default TAOBOT_DB)")
    status.set_defaults(func=cmd_status)

    audit = sub.add_parser("audit", help="who did what, where and when, allowed or refused (UTC times)")
    audit.add_argument("--since", help="only rows from then on: 30m, 2h, 7d or an ISO date")
    audit.add_argument("--user", help="only this Slack user id")
    audit.add_argument("--limit", type=int, default=500, help="at most this many of the newest rows (default 500)")
    audit.add_argument("--db", help="database path (default TAOBOT_DB)")
    audit.set_defaults(func=cmd_audit)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except TaobotError as exc:
        print(f"taobot: {exc.message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:  # a file or folder the settings point at cannot be used
        print(f"taobot: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
