"""The ``hotline`` command: one entry point for operators, make targets and tests.

Heavy modules are imported inside each command so ``hotline --help`` stays instant and no
connection is ever opened at import.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence

from hotline import dispatch_cli
from hotline.settings import Settings, SettingsError, load_settings

log = logging.getLogger("hotline")


class CommandError(Exception):
    """A failure the operator can act on: printed without a traceback, exit status 1."""


def _cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from hotline.roles.cluster import RoleError, check_role
    from hotline.roles.control_lease import LeaseLost, StoppedInStandby
    from hotline.service import serve_forever

    try:
        check_role(settings, args.role)
    except RoleError as exc:
        raise CommandError(str(exc)) from None
    try:
        asyncio.run(serve_forever(settings, args.role))
    except StoppedInStandby:
        return 0
    except LeaseLost as exc:  # restarted, it waits as the standby
        raise CommandError(str(exc)) from None
    return 0


def _cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    from hotline.daemon import start_all

    return start_all(settings, with_asterisk=not args.no_asterisk)


def _cmd_down(settings: Settings, args: argparse.Namespace) -> int:
    from hotline.daemon import stop_all

    return stop_all(settings)


def _cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    from hotline.daemon import show_status

    return show_status(settings)


def _cmd_asterisk(settings: Settings, args: argparse.Namespace) -> int:
    from hotline.asterisk import process

    if args.action == "up":
        process.up(settings)
        print(f"asterisk is up: SIP udp {settings.asterisk.bind_host}:{settings.asterisk.sip_port},"
              f" AMI {settings.ami.host}:{settings.ami.port}")
    elif args.action == "down":
        process.down(settings)
        print("asterisk is down")
    elif args.action == "status":
        print(json.dumps(process.status(settings), indent=2, default=str))
    elif args.action == "render":
        from pathlib import Path

        from hotline.asterisk.render import render_config

        if len(args.command) != 1:
            raise CommandError("usage: hotline asterisk render DIR")
        target = Path(args.command[0])
        target.mkdir(parents=True, exist_ok=True)
        for name, text in render_config(settings).items():
            (target / name).write_text(text, encoding="utf-8")
            (target / name).chmod(0o640)
        print(f"rendered {len(render_config(settings))} files into {target} "
              "(they contain secrets: keep them private)")
        from hotline.asterisk.sounds import write_sounds

        write_sounds(settings, lambda relative: target / "sounds" / relative, target / "moh")
        print(f"queue sounds in {target / 'sounds'} (copy into Asterisk's sounds directory) "
              f"and hold music in {target / 'moh'} (copy into "
              f"{settings.queue_wait.hold_music_dir})")
    else:
        if not args.command:
            raise CommandError('usage: hotline asterisk cli "<command>"')
        print(process.cli(settings, " ".join(args.command)))
    return 0


def _cmd_edge(settings: Settings, args: argparse.Namespace) -> int:
    from hotline.edge.cluster import command

    command(settings, args.action, args.node)
    return 0


def _cmd_cluster(settings: Settings, args: argparse.Namespace) -> int:
    from hotline.cluster.launcher import command

    return command(settings, args.action, seed_demo=args.seed_demo, as_json=args.json)


def _cmd_db(settings: Settings, args: argparse.Namespace) -> int:
    from crm.storage.migrate import upgrade

    asyncio.run(upgrade(settings.database_url))
    print(f"database schema is up to date ({_redact(settings.database_url)})")
    if args.action == "seed-demo":
        from crm.demo_data import seed_demo

        added = asyncio.run(seed_demo(settings.database_url,
                                      agent_password=settings.web.demo_password))
        print(f"demo data: {added} records added")
    return 0


def _cli_actor() -> str:
    """Who reads residents' data from the command line, for the audit log: the OS user."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no name for this uid (e.g. a bare container user)
        import os

        return f"cli:uid-{os.getuid()}"


def _cmd_consultations(settings: Settings, args: argparse.Namespace) -> int:
    if args.action == "show":
        return _show(settings, "consultation", args.consultation)
    from crm.audit import log as audit
    from crm.consultations.recorder import list_consultations
    from crm.storage.db import open_database

    async def fetch() -> list[dict]:
        database = open_database(settings.database_url, echo=settings.database.echo)
        try:
            sessions = database.sessions
            views = await list_consultations(sessions, limit=args.limit, phone=args.phone)
            await audit.write(sessions, actor=_cli_actor(), action="consultation.search",
                              object_type="consultation",
                              detail={"query": {"limit": args.limit, "phone": args.phone},
                                      "ids": [v.id for v in views], "via": "cli"})
        finally:
            await database.close()
        return [v.to_json() for v in views]

    rows = asyncio.run(fetch())
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    if not rows:
        print("no consultations yet")
    for r in rows:
        print(f"{r['started_at'] or '-':32} {r['caller_number'] or '-':>14} "
              f"{r['caller_name'] or '':10} {r['outcome'] or 'in progress':15} "
              f"{r['duration_s'] if r['duration_s'] is not None else '-'} s  {r['call_id']}")
    return 0


def _show(settings: Settings, what: str, key: str | None) -> int:
    from hotline.cli_show import ShowError, show

    try:
        print(show(settings, what, key))
    except ShowError as exc:
        raise CommandError(str(exc)) from None
    return 0


def _cmd_demo_call(settings: Settings, args: argparse.Namespace) -> int:
    from hotline.tools.sipp import place_call

    keys = args.keys if args.keys is not None else asyncio.run(_demo_keys(settings, args.number))
    print(f"calling {settings.asterisk.hotline_number} as {args.name} <{args.number}>, "
          f"keying {keys or 'nothing'}")
    result = asyncio.run(place_call(settings, caller_number=args.number, caller_name=args.name,
                                    keys=keys, hold_ms=args.hold_ms))
    print(f"{'answered' if result.answered else 'NOT answered'} (sipp exit {result.exit_code}); "
          "see it with: .venv/bin/hotline consultations list")
    return 0 if result.answered else 1


async def _demo_keys(settings: Settings, phone: str) -> str:
    """Check the caller's own newest case: its number keyed at the greeting, #, 1 (confirm);
    a caller without a case keys nothing and waits for a person."""
    from sqlalchemy import select

    from crm.storage.db import open_database
    from crm.storage.models import Case

    async with open_database(settings.database_url, echo=settings.database.echo) as database, \
            database.sessions() as session:
        number = await session.scalar(select(Case.number).where(Case.contact_phone == phone)
                                      .order_by(Case.created_at.desc()))
    if not number:
        return ""
    # A number starting with a key the greeting acts on at once needs the check-status key.
    prefix = ((settings.intake.check_status_key or "")
              if number[:1] in settings.intake.command_keys() else "")
    return f"{prefix}{number}#1"


def _cmd_token(settings: Settings, args: argparse.Namespace) -> int:
    from crm.agents import tokens as api_tokens
    from crm.errors import HotlineError
    from crm.storage.db import open_database
    from crm.storage.migrate import upgrade

    if args.action == "show":
        return _show(settings, "token", args.name or args.token_name)
    if args.action == "disable":  # the verb the other commands use; revoke stays
        args.action = "revoke"
    name = args.name or args.token_name
    if args.action in ("create", "revoke") and not name:
        raise CommandError(f"usage: hotline token {args.action} NAME"
                           + (" --scope SCOPE..." if args.action == "create" else ""))
    if args.action == "create" and not args.scope:
        raise CommandError("a token needs at least one --scope: "
                           + ", ".join(api_tokens.SCOPES))

    async def run() -> list[str]:
        await upgrade(settings.database_url)
        database = open_database(settings.database_url, echo=settings.database.echo)
        sessions = database.sessions
        try:
            if args.action == "create":
                return [await api_tokens.create_token(sessions, name, args.scope,
                                                      expires_in_days=args.expires_in)]
            if args.action == "revoke":
                if not await api_tokens.revoke(sessions, name):
                    raise CommandError(f"no live token named {name!r} (see: hotline token "
                                       "list --all)")
                return [f"token {name!r} revoked: it is refused from now on"]
            return [f"{t.name:24} {t.state:8} {','.join(sorted(t.scopes)):40} "
                    f"made {t.created_at:%Y-%m-%d %H:%M} "
                    f"expires {f'{t.expires_at:%Y-%m-%d %H:%M}' if t.expires_at else 'never'}"
                    for t in await api_tokens.list_tokens(sessions,
                                                          include_revoked=args.all)]
        finally:
            await database.close()

    try:
        lines = asyncio.run(run())
    except HotlineError as exc:
        raise CommandError(str(exc)) from None
    if args.action == "create":
        expiry = f", expires in {args.expires_in:g} days" if args.expires_in else ""
        print(lines[0])
        print(f"token {name!r} with scopes {', '.join(args.scope)}{expiry}: shown once, "
              "store it now", file=sys.stderr)
        return 0
    print("\n".join(lines) or "no tokens")
    return 0


def _cmd_dispatch(settings: Settings, args: argparse.Namespace) -> int:
    try:
        print("\n".join(dispatch_cli.run(settings, args)))
    except dispatch_cli.DispatchCommandError as exc:
        raise CommandError(str(exc)) from None
    return 0


def _cmd_speech(settings: Settings, args: argparse.Namespace) -> int:
    from pathlib import Path

    from speech.install import ModelInstallError, configuration_hint, install_model
    from speech.stack import installed_models_dir

    if args.action == "install-model":
        if not args.lang or not args.source:
            raise CommandError("usage: hotline speech install-model LANG PATH-OR-ARCHIVE")
        try:
            path = install_model(args.lang, Path(args.source), installed_models_dir(settings),
                                 overwrite=args.overwrite, origin=args.origin)
        except ModelInstallError as exc:
            raise CommandError(str(exc)) from None
        print(configuration_hint(args.lang, path))
        return 0
    from speech.models import SpeechModels

    models = SpeechModels.from_settings(settings)
    asyncio.run(models.load())
    for lang, info in models.status().items():
        print(f"{lang}: {info['reason']}")
    return 0


def _cmd_agents(settings: Settings, args: argparse.Namespace) -> int:
    import getpass

    from crm.agents import accounts as agents
    from crm.agents import sessions as browser_sessions
    from crm.errors import HotlineError
    from crm.storage.db import SessionFactory, open_database
    from crm.storage.migrate import upgrade

    if args.action == "show":
        return _show(settings, "agent", args.login)
    if args.action in ("import", "export"):  # FILE in place of LOGIN: hotline.directory_csv
        from hotline.directory_csv import run_file
        return run_file(settings, "agents", args.action, args.login)
    password = None
    if args.action not in ("list", "sessions") and not args.login:
        raise CommandError(f"usage: hotline agents {args.action} LOGIN")
    if args.action == "set-role" and not args.role:
        raise CommandError("usage: hotline agents set-role LOGIN --role ROLE")
    if args.action == "set-languages" and not args.languages:
        raise CommandError("usage: hotline agents set-languages LOGIN cmn,en")
    if args.action in ("create", "set-password"):
        password = (sys.stdin.readline().rstrip("\n") if args.password_stdin
                    else getpass.getpass(f"password for {args.login}: "))
        if len(password) < 8:
            raise CommandError("passwords need at least 8 characters")

    def ended(count: int) -> str:
        return (f"; {count} web session(s) ended, their websockets close within "
                f"{settings.web.session_check_interval:g} s" if count else "")

    def state(account: agents.AgentView) -> str:
        if not account.active:
            return "disabled"
        return "can log in" if account.can_log_in else "no password"

    async def live_sessions(sessions: SessionFactory) -> int:
        return len(await browser_sessions.list_sessions(sessions, login=args.login))

    async def run() -> list[str]:
        await upgrade(settings.database_url)
        database = open_database(settings.database_url, echo=settings.database.echo)
        sessions = database.sessions
        try:
            if args.action == "create":
                await agents.create_agent(sessions, login=args.login,
                                          display_name=args.name or args.login,
                                          role=args.role or "agent",
                                          extension=args.extension, password=password)
                return [f"agent {args.login} created"]
            if args.action == "set-password":
                count = await agents.set_password(sessions, args.login, password or "")
                return [f"password of {args.login} changed{ended(count)}"]
            if args.action == "set-languages":
                account = await agents.update_agent(sessions, args.login,
                                                    languages=args.languages.split(","))
                return [f"{args.login} speaks {', '.join(account.languages)} (the desk's "
                        "queues follow at the next sign-in)"]
            if args.action in ("disable", "enable", "set-role", "end-sessions"):
                count = await live_sessions(sessions)
                if args.action == "disable":
                    await agents.disable_agent(sessions, args.login)
                    return [f"agent {args.login} disabled: cannot sign in{ended(count)}"]
                if args.action == "enable":
                    await agents.enable_agent(sessions, args.login)
                    return [f"agent {args.login} enabled"]
                if args.action == "set-role":
                    before = await agents.get_agent(sessions, args.login)
                    await agents.update_agent(sessions, args.login, role=args.role)
                    changed = before.role != args.role
                    return [f"{args.login} is {args.role}{ended(count if changed else 0)}"]
                account = await agents.get_agent(sessions, args.login)
                gone = await browser_sessions.revoke_agent(sessions, account.id, "ended_by_cli")
                return [f"{args.login}: {len(gone)} web session(s) ended"]
            if args.action == "sessions":
                return [f"{r.login:16} {r.app:8} {r.role:10} since {r.created_at:%Y-%m-%d %H:%M}"
                        f" last {r.last_seen_at:%H:%M} ends {r.expires_at:%Y-%m-%d %H:%M} "
                        f"from {r.source or '-'}  [{r.id}]"
                        for r in await browser_sessions.list_sessions(sessions,
                                                                      login=args.login)]
            return [f"{a.login:16} {a.role:10} ext {a.extension or '-':6} {state(a):11}  "
                    f"{','.join(a.languages):10} {a.display_name}"
                    for a in await agents.list_agents(sessions, include_inactive=True)]
        finally:
            await database.close()

    try:
        print("\n".join(asyncio.run(run())) or "none")
    except HotlineError as exc:
        raise CommandError(str(exc)) from None
    return 0


def _cmd_surveys(settings: Settings, args: argparse.Namespace) -> int:
    if args.action == "show":
        return _show(settings, "survey", args.survey)
    if args.action == "return-visits":
        from hotline.surveys import run_return_visits

        reports = asyncio.run(run_return_visits(settings))
        if not reports:
            print("no return visit due (resolved cases all visited, or outside calling hours)")
        for r in reports:
            print(f"case {r.case_number}: {r.outcome}" + (f" ({r.detail})" if r.detail else ""))
        return 0

    from crm.audit import log as audit
    from crm.storage.db import open_database
    from crm.surveys import service as surveys

    async def fetch() -> list[str]:
        database = open_database(settings.database_url, echo=settings.database.echo)
        try:
            sessions = database.sessions
            if args.action == "follow-ups":
                items = await surveys.list_follow_ups(sessions, status=None)
                await audit.write(sessions, actor=_cli_actor(), action="survey_follow_up.search",
                                  object_type="survey_follow_up",
                                  detail={"ids": [f.id for f in items], "via": "cli"})
                return [f"#{f.id} {f.status:8} score {f.score} {f.phone or '-'} "
                        f"assigned to {f.assignee_login or '-'}" for f in items]
            views = await surveys.list_surveys(sessions, limit=args.limit)
            await audit.write(sessions, actor=_cli_actor(), action="survey.search",
                              object_type="survey",
                              detail={"query": {"limit": args.limit},
                                      "ids": [v.id for v in views], "via": "cli"})
            return [f"#{v.id} {v.started_at:%Y-%m-%d %H:%M} {v.kind:12} {v.outcome:10} "
                    f"score {v.score if v.score is not None else '-'} "
                    f"agent {v.agent_login or '-'}" for v in views]
        finally:
            await database.close()

    print("\n".join(asyncio.run(fetch())) or "nothing yet")
    return 0


def _cmd_retention(settings: Settings, args: argparse.Namespace) -> int:
    from hotline.retention import run_purge

    def progress(line: str) -> None:
        print(f"  ... {line}", file=sys.stderr, flush=True)

    report = asyncio.run(run_purge(settings, dry_run=args.dry_run, progress=progress))
    print("\n".join(report.lines()))
    if args.dry_run:
        print("dry run: nothing was removed", file=sys.stderr)
    return 0


def _cmd_doctor(settings: Settings, args: argparse.Namespace) -> int:
    from hotline.doctor.command import run_doctor

    return run_doctor(settings, args.config)


def _cmd_backup(settings: Settings, args: argparse.Namespace) -> int:
    from hotline.backup.command import run_backup, run_restore

    return (run_backup if args.cmd == "backup" else run_restore)(settings, args)


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hotline", description="Community service hotline")
    p.add_argument("--config", help="settings TOML file (default: $HOTLINE_CONFIG, else "
                   "/etc/hotline/hotline.toml when installed, else built-in)")
    p.add_argument("--log-format", choices=["text", "json"],
                   help="log lines as text or JSON (default: the log_format setting)")
    sub = p.add_subparsers(dest="cmd", required=True)

    serve = sub.add_parser("serve", help="run IVR, AMI control and web app in the foreground")
    serve.add_argument("--role", choices=["all", "core", "web", "control", "ivr"],
                       default="all",
                       help="all: everything in this process (default); core: AMI control "
                            "and the IVR; web: desk, console and API; control: AMI, "
                            "trackers, recorder, callbacks (one per cluster); ivr: an IVR "
                            "worker (any number; list them in [audiosocket] workers). Every "
                            "role but all needs [bus] kind = \"redis\"")
    up = sub.add_parser("up", help="start Asterisk and the hotline service in the background")
    up.add_argument("--no-asterisk", action="store_true", help="use an external Asterisk")
    sub.add_parser("down", help="stop the hotline service and the built-in Asterisk")
    sub.add_parser("status", help="whether the service started by up runs and serves "
                   "(exit 0 serving, 1 unhealthy, 3 not running)")

    ast = sub.add_parser("asterisk", help="manage the built-in Asterisk 22")
    ast.add_argument("action", choices=["up", "down", "status", "cli", "render"])
    ast.add_argument("command", nargs="*",
                     help="for cli: an Asterisk CLI command; for render: a directory")

    edge = sub.add_parser("edge", help="the SIP edge (Kamailio) and its media nodes (cluster)")
    edge.add_argument("action", choices=["up", "down", "status"])
    edge.add_argument("node", nargs="?", help="one media node of [edge] nodes (default: all)")
    cl = sub.add_parser("cluster", help="the whole cluster on this machine (make run-cluster)")
    cl.add_argument("action", choices=["up", "down", "status", "supervise"])  # supervise: by up
    cl.add_argument("--seed-demo", action="store_true", help="up: add the demo data")
    cl.add_argument("--json", action="store_true", help="status: as JSON")

    db = sub.add_parser("db", help="database schema and demo data")
    db.add_argument("action", choices=["upgrade", "seed-demo"])

    cons = sub.add_parser("consultations", help="consultation records (one per call)")
    cons.add_argument("action", choices=["list", "show"])
    cons.add_argument("consultation", nargs="?", metavar="ID", help="show: id or call id")
    cons.add_argument("--json", action="store_true")
    cons.add_argument("--limit", type=int, default=50)
    cons.add_argument("--phone", help="only calls from this number")

    demo = sub.add_parser("demo-call", help="place a test call to the hotline with SIPp")
    demo.add_argument("--number", default="13800138000")
    demo.add_argument("--name", default="张三")
    demo.add_argument("--keys", default=None,
                      help="keys the caller presses (RFC 2833); default: look up their case")
    demo.add_argument("--hold-ms", type=int, default=30000)
    tok = sub.add_parser("token", help="API tokens for department systems")
    tok.add_argument("action", choices=["create", "list", "show", "disable", "revoke"],
                     help="disable: the same as revoke")
    tok.add_argument("token_name", nargs="?", metavar="NAME",
                     help="the token (create, show, disable/revoke)")
    tok.add_argument("--name", help="the token's name (create; same as NAME)")
    tok.add_argument("--scope", action="append",
                     help="cases:read, cases:write, consultations:read or reports:read "
                          "(repeatable)")
    tok.add_argument("--expires-in", type=float, metavar="DAYS",
                     help="create: refuse the token from this many days on (default: never)")
    tok.add_argument("--all", action="store_true", help="list: revoked tokens too")

    dispatch_cli.add_parser(sub)
    ag = sub.add_parser("agents", help="desk accounts (agents, supervisors, admins)")
    ag.add_argument("action", choices=["list", "show", "create", "set-password", "set-role",
                                       "set-languages", "disable", "enable", "sessions",
                                       "end-sessions", "import", "export"],
                    help="disable, set-password, set-role and end-sessions end the account's "
                         "desk and console sessions at once; import|export FILE: accounts as "
                         "CSV login,name,role,extension,languages (never passwords)")
    ag.add_argument("login", nargs="?")
    ag.add_argument("languages", nargs="?",
                    help="set-languages: the languages the agent speaks, e.g. cmn,en")
    ag.add_argument("--name", help="display name (create)")
    ag.add_argument("--role", choices=["agent", "supervisor", "admin"],
                    help="create (default agent), set-role")
    ag.add_argument("--extension", help="SIP extension of the agent's phone, e.g. 2001")
    ag.add_argument("--password-stdin", action="store_true",
                    help="read the password from standard input instead of prompting")

    sv = sub.add_parser("surveys", help="satisfaction surveys and return visits")
    sv.add_argument("action", choices=["list", "show", "follow-ups", "return-visits"],
                    help="return-visits: call residents of resolved cases now (needs serve)")
    sv.add_argument("--limit", type=int, default=50)
    sv.add_argument("survey", nargs="?", metavar="ID", help="show: the survey's #id")

    rt = sub.add_parser("retention", help="remove residents' data kept longer than the "
                        "retention settings allow")
    rt.add_argument("action", choices=["purge"])
    rt.add_argument("--dry-run", action="store_true",
                    help="count what would be removed, change nothing")

    sp = sub.add_parser("speech", help="speech models per language")
    sp.add_argument("action", choices=["install-model", "status"])
    sp.add_argument("lang", nargs="?", help="cmn, en or ko")
    sp.add_argument("source", nargs="?", help="model directory, .zip or .tar.gz")
    sp.add_argument("--overwrite", action="store_true")
    sub.add_parser("doctor", help="check this installation and say what to fix")
    from hotline.backup.command import add_parsers

    add_parsers(sub)
    sp.add_argument("--origin", metavar="URL",
                    help="install-model: where the model was downloaded from (recorded)")
    _add_directory_csv(sub)
    _add_version(p)
    _accept_global_options_after_command(p, sub)
    return p


def _add_directory_csv(sub: argparse._SubParsersAction) -> None:
    from hotline import directory_csv

    directory_csv.add_parsers(sub)
    COMMANDS.update(dict.fromkeys(directory_csv.KINDS, directory_csv.run))


def _add_version(parser: argparse.ArgumentParser) -> None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        installed = version("community-hotline")
    except PackageNotFoundError:
        installed = "unknown (not installed)"
    parser.add_argument("--version", action="version", version=f"%(prog)s {installed}")


def _accept_global_options_after_command(parser: argparse.ArgumentParser,
                                         sub: argparse._SubParsersAction) -> None:
    """`hotline CMD --config F` as well as `hotline --config F CMD`: each subcommand also
    takes the top level's options (--config, and any added there later); when not given
    after the command, the value from before it stands (default SUPPRESS)."""
    shared = [a for a in parser._actions
              if a.option_strings and a.dest not in ("help", "version")]
    for command in sub.choices.values():
        for action in shared:
            if isinstance(action, argparse._StoreTrueAction):
                command.add_argument(*action.option_strings, dest=action.dest,
                                     action="store_true", default=argparse.SUPPRESS,
                                     help=action.help)
            else:
                command.add_argument(*action.option_strings, dest=action.dest,
                                     nargs=action.nargs, type=action.type,
                                     choices=action.choices, metavar=action.metavar,
                                     default=argparse.SUPPRESS, help=action.help)


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "serve": _cmd_serve, "up": _cmd_up, "down": _cmd_down, "asterisk": _cmd_asterisk,
    "db": _cmd_db, "consultations": _cmd_consultations, "demo-call": _cmd_demo_call,
    "token": _cmd_token, "speech": _cmd_speech, "agents": _cmd_agents,
    "surveys": _cmd_surveys, "retention": _cmd_retention, "edge": _cmd_edge,
    "doctor": _cmd_doctor, "backup": _cmd_backup, "restore": _cmd_backup,
    "status": _cmd_status, "cluster": _cmd_cluster, "dispatch": _cmd_dispatch,
}


def main(argv: Sequence[str] | None = None) -> int:
    from crm.storage.private_files import ASTERISK_UMASK

    # Nothing a hotline command (or an Asterisk it starts) writes is for other users.
    os.umask(ASTERISK_UMASK)
    args = build_parser().parse_args(argv)
    if args.log_format:  # as a setting, so `hotline up` hands it to the service it starts
        os.environ["HOTLINE_LOG_FORMAT"] = args.log_format
    try:
        settings = load_settings(args.config)
    except SettingsError as exc:
        print(f"hotline: {exc}", file=sys.stderr)
        return 2
    from hotline.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    from hotline.assets import AssetError
    from hotline.asterisk.errors import AsteriskError

    try:
        return COMMANDS[args.cmd](settings, args)
    except (CommandError, AsteriskError, AssetError) as exc:
        print(f"hotline: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
