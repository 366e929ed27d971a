"""The ``maintainer`` command: parse, call the library, print. No logic here."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from . import __version__
from .changelog import STATUSES, TRIGGER_KINDS
from .errors import REPORT_URL, BadInput, ExitCode, MaintainerError

OUTPUT = click.option(
    "--output",
    "-o",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: exactly one JSON document on stdout; progress goes to stderr.",
)
INVENTORY = click.option(
    "-i",
    "--inventory",
    "inventory",
    multiple=True,
    metavar="INV",
    help="Ansible inventory file or directory (repeatable); default from maintainer.toml.",
)
LIMIT = click.option(
    "--limit", "-l", metavar="PATTERN", help="Ansible host pattern, e.g. 'shop*' or 'web:!db'."
)
IGNORE_WINDOW = click.option(
    "--ignore-window",
    is_flag=True,
    help="Run sites whose maintenance_window is closed (else they are not run: exit 3); recorded in the log.",
)
VAULT = click.option(
    "--vault-password-file",
    type=click.Path(dir_okay=False),
    envvar="MAINTAINER_VAULT_PASSWORD_FILE",
    help="File with the ansible-vault password (or MAINTAINER_VAULT_PASSWORD_FILE).",
)


def _emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def _pass_project(func: Callable[..., Any]) -> Callable[..., Any]:
    """Like click.pass_obj, but the project must load (else exit 2), for every command.

    The directory must exist and its maintainer.toml be valid (unknown keys, wrong types), even
    for commands that read no setting, so every command treats a broken project alike.
    """

    @click.pass_obj
    def wrapper(project: Path, *args: Any, **kwargs: Any) -> Any:
        from .project import load_project

        return func(load_project(project).root, *args, **kwargs)

    return functools.update_wrapper(wrapper, func)


def _wants_json(group: click.Group, args: list[str]) -> bool:
    """Whether the command line asks for --output json, read the way Click itself parses it.

    Every spelling (--output json, --output=json, -o json, -ojson) counts, and "json" as the value
    of another option does not. Errors are tolerated (resilient parsing), so this also works for
    the command lines whose errors we are about to report.
    """

    def unparsed(ctx: click.Context) -> list[str]:
        # Click < 8.2 keeps the subcommand in protected_args; later versions warn on that name
        protected = getattr(ctx, "_protected_args", None)
        return [*(ctx.protected_args if protected is None else protected), *ctx.args]

    try:
        ctx = group.make_context(
            "maintainer", list(args), resilient_parsing=True, ignore_unknown_options=True
        )
        rest = unparsed(ctx)
        command: click.Command = group
        while isinstance(command, click.Group) and rest:
            name, sub, rest = command.resolve_command(ctx, rest)
            if sub is None or name is None:
                return False
            ctx = sub.make_context(
                name, rest, parent=ctx, resilient_parsing=True, ignore_unknown_options=True
            )
            command, rest = sub, unparsed(ctx)
        return ctx.params.get("output") == "json"
    except Exception:  # an unparseable command line: a text error, as without -o json
        return False


class _ReaderGone(Exception):
    """stdout's reader closed the pipe (not an OSError, so Click does not turn it into exit 1)."""


class _Group(click.Group):
    """Maps every error to its exit code in one place."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            raise _ReaderGone() from None

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        argv = kwargs.get("args", args[0] if args else None)
        json_out = _wants_json(self, list(sys.argv[1:] if argv is None else argv))
        try:
            code = super().main(*args, **kwargs)
            sys.exit(int(code or 0))
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            click.echo("aborted", err=True)
            sys.exit(ExitCode.INTERRUPTED)
        except _ReaderGone:
            # the reader went away (| head): not a failed site; exit as a SIGPIPE'd tool would
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(128 + signal.SIGPIPE)
        except click.ClickException as exc:
            exc.show()
            if json_out:
                _emit_json({"error": exc.format_message(), "exit_code": int(ExitCode.BAD_INPUT)})
            sys.exit(ExitCode.BAD_INPUT)
        except MaintainerError as exc:
            click.secho(f"error: {exc}", err=True, fg="red")
            if json_out:
                _emit_json({"error": str(exc), "exit_code": int(exc.exit_code), **exc.details()})
            sys.exit(exc.exit_code)
        except Exception as exc:
            traceback.print_exc()
            click.secho(
                f"internal error: {type(exc).__name__}: {exc}\n"
                f"This is a bug; please report it at {REPORT_URL}",
                err=True,
                fg="red",
            )
            if json_out:
                _emit_json({"error": f"internal error: {exc}", "exit_code": int(ExitCode.INTERNAL)})
            sys.exit(ExitCode.INTERNAL)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--project",
    type=click.Path(file_okay=False),
    default=".",
    show_default=True,
    help="Project directory (runbooks/, inventories/, maintainer.toml).",
)
@click.version_option(__version__, prog_name="maintainer")
@click.pass_context
def cli(ctx: click.Context, project: str) -> None:
    """Run versioned maintenance runbooks against site inventories, with a tamper-evident change log.

    Exit codes: 0 ok, 1 a site failed, 2 bad input (nothing run), 3 could not start (lock, window),
    4 internal error, 130 interrupted (SIGINT, SIGTERM, SIGHUP).
    """
    ctx.obj = Path(project)


@cli.command()
@click.argument("runbook")
@INVENTORY
@LIMIT
@click.option(
    "-p", "--param", "params", multiple=True, metavar="KEY=VALUE", help="Runbook parameter (repeatable)."
)
@click.option("--dry-run", is_flag=True, help="Print the plan and change nothing.")
@click.option("--concurrency", type=click.IntRange(1, 1000), help="Sites at once (overrides the runbook).")
@click.option(
    "--ticket", metavar="ID", help="Why: the ticket this run belongs to (recorded in the change log)."
)
@click.option(
    "--wait-lock",
    type=click.FloatRange(0),
    default=0,
    metavar="SECONDS",
    help="Wait this long for a site lock held by another run instead of failing with exit 3.",
)
@IGNORE_WINDOW
@click.option(
    "--trigger",
    type=click.Choice(TRIGGER_KINDS),
    help="How this run was started (else MAINTAINER_TRIGGER, else detected); recorded in the change log.",
)
@click.option("-v", "--verbose", is_flag=True, help="After the summary, show each step's output.")
@VAULT
@OUTPUT
@_pass_project
def run(
    project: Path,
    runbook: str,
    inventory: tuple[str, ...],
    limit: str | None,
    params: tuple[str, ...],
    dry_run: bool,
    concurrency: int | None,
    ticket: str | None,
    wait_lock: float,
    ignore_window: bool,
    trigger: str | None,
    verbose: bool,
    vault_password_file: str | None,
    output: str,
) -> int:
    """Run RUNBOOK (name, name@MAJOR or name@X.Y.Z) against the inventory's sites."""
    from . import engine
    from . import runbook as rb

    options = engine.RunOptions(
        runbook=runbook,
        inventory=list(inventory),
        project=project,
        limit=limit,
        params=rb.parse_param_args(params),
        dry_run=dry_run,
        concurrency=concurrency,
        ticket=ticket,
        wait_lock=wait_lock,
        ignore_window=ignore_window,
        vault_password_file=vault_password_file,
        trigger=trigger,
    )
    return _run_runbook(options, output, verbose)


def _run_runbook(options: Any, output: str, verbose: bool = False) -> int:
    """Run (or with ``dry_run`` plan) a runbook and print it: ``run``, ``restore``, ``backups prune``."""
    from . import engine
    from . import output as out

    console = out.make_console(stderr=True)
    cancel = threading.Event()
    _install_signal_handlers(cancel, console)
    live = console.is_terminal and output == "text"

    if options.dry_run:
        result = engine.run(options, cancel=cancel)
        if output == "json":
            # exit_code up front: CI need not scan every site for "previewed": false
            _emit_json({"dry_run": True, "exit_code": int(result.exit_code), **result.plan.record()})
        else:
            out.print_plan(result.plan, out.make_console())
        missed = engine.unplanned(result.plan)
        if missed:
            # exit 1: a CI pre-flight must notice the sites the real run would not reach
            click.secho(
                f"{len(missed)} site(s) could not be previewed: "
                + "; ".join(f"{name}: {why}" for name, why in missed.items()),
                err=True,
                fg="red",
            )
        return result.exit_code

    if live:
        # the display starts once the plan says how many sites there are
        with out.LiveReporter(console) as live_reporter:
            result = engine.run(options, reporter=live_reporter, cancel=cancel, on_plan=live_reporter.start)
    else:
        result = engine.run(options, reporter=out.PlainReporter(), cancel=cancel)
    if output == "json":
        _emit_json(result.record())
    elif result.entry is None and result.unrecorded is not None:
        # refused before starting: no summary table claiming a recorded run, just who holds what
        for name, site in result.sites.items():
            click.echo(f"{name}: {site.status} ({site.host}): {site.error}", err=True)
        click.secho(
            "REFUSED: every selected site is locked by another run; nothing was run or recorded.",
            err=True,
            fg="red",
        )
    else:
        if verbose:
            out.print_details(result, console)
        out.print_summary(result, console)
    return result.exit_code


def _install_signal_handlers(cancel: threading.Event, console: Any) -> None:
    """SIGINT, SIGTERM and SIGHUP (the SSH session or terminal went away) stop the run the same way:
    no new steps, in-flight sites roll back, the run is recorded, exit 130."""

    def handler(signum: int, _frame: Any) -> None:
        first = not cancel.is_set()
        cancel.set()
        # after SIGHUP the terminal may be gone: the run must still roll back and record
        if first:
            with contextlib.suppress(OSError, ValueError, SystemExit):
                console.print(
                    f"[yellow]{signal.Signals(signum).name}: no new steps; in-flight sites roll back "
                    "and the run is recorded as interrupted[/]"
                )

    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, handler)


# ------------------------------------------------------------------ runbooks


@cli.group()
def runbooks() -> None:
    """List, show and validate versioned runbooks."""


@runbooks.command("list")
@OUTPUT
@_pass_project
def runbooks_list(project: Path, output: str) -> None:
    """Every runbook with its versions, newest first."""
    from . import runbook as rb

    found = {
        name: [".".join(map(str, v)) for v, _ in versions] for name, versions in rb.available(project).items()
    }
    if output == "json":
        _emit_json(found)
        return
    for name, versions in sorted(found.items()):
        path = rb.resolve(project, name)
        try:
            description = rb.load(path).model.description
        except BadInput:
            description = "(invalid: see 'maintainer runbooks validate')"
        click.echo(f"{name:<18} {', '.join(versions):<20} {description}")
    for problem in rb.layout_problems(project):  # misnamed files are not read: say so
        click.echo(f"warning: {problem}", err=True)


@runbooks.command("show")
@click.argument("ref")
@OUTPUT
@_pass_project
def runbooks_show(project: Path, ref: str, output: str) -> None:
    """Print one runbook (NAME, NAME@MAJOR, NAME@X.Y.Z) with its digest."""
    from . import runbook as rb

    loaded = rb.load(rb.resolve(project, ref))
    if output == "json":
        _emit_json(
            {
                "path": str(loaded.path),
                "digest": loaded.digest,
                **loaded.model.model_dump(by_alias=True, mode="json"),
            }
        )
        return
    click.echo(f"# {loaded.path}  sha256:{loaded.digest}", err=True)
    click.echo(loaded.path.read_text(encoding="utf-8"), nl=False)


@runbooks.command("validate")
@click.argument("path", required=False, type=click.Path(exists=True, path_type=Path))
@OUTPUT
@_pass_project
def runbooks_validate(project: Path, path: Path | None, output: str) -> int:
    """Validate every runbook (or PATH); each problem is reported with file:line."""
    from . import runbook as rb

    checked, problems = rb.validate_all(project, path)
    if output == "json":
        _emit_json(
            {
                "checked": checked,
                "problems": [
                    {"file": p.file, "line": p.line, "key": p.key, "message": p.message, "fix": p.fix}
                    for p in problems
                ],
            }
        )
    else:
        for problem in problems:
            click.echo(str(problem), err=True)
        click.echo(f"{checked} runbook file(s) checked, {len(problems)} problem(s)", err=True)
    return ExitCode.BAD_INPUT if problems else ExitCode.OK


# ------------------------------------------------------------------ inventory


@cli.group()
def inventory() -> None:
    """Inspect inventories as maintainer sees them."""


@inventory.command("list")
@INVENTORY
@LIMIT
@VAULT
@OUTPUT
@_pass_project
def inventory_list(
    project: Path, inventory: tuple[str, ...], limit: str | None, vault_password_file: str | None, output: str
) -> None:
    """Sites and their resolved vars, secrets masked."""
    from .inventory import load_inventory
    from .project import load_project

    proj = load_project(project)
    inv = load_inventory(proj.inventory_sources(inventory), vault_password_file=vault_password_file)
    sites = inv.select(limit)
    data = {s.name: {"groups": s.groups, "vars": inv.masked_vars(s)} for s in sites}
    if output == "json":
        _emit_json({"digest": inv.digest, "sites": data})
        return
    for site in sites:
        click.echo(
            f"{site.name}  [{', '.join(site.groups) or 'ungrouped'}]  {site.connection} "
            f"{site.user + '@' if site.user else ''}{site.host}"
        )
        for key, value in sorted(inv.masked_vars(site).items()):
            if key in ("inventory_hostname", "group_names"):
                continue
            click.echo(f"    {key}: {json.dumps(value, default=str)}")


# ------------------------------------------------------------------ backups

SITE = click.argument("site")


@cli.group()
def backups() -> None:
    """A site's backups: list, verify, prune (run them with: maintainer run backup)."""


@backups.command("list")
@SITE
@INVENTORY
@VAULT
@OUTPUT
@_pass_project
def backups_list(
    project: Path, site: str, inventory: tuple[str, ...], vault_password_file: str | None, output: str
) -> None:
    """SITE's backups, oldest first: id, time, status, files, size, new bytes, uploaded."""
    from .backup.catalog import find_site, list_backups
    from .output import make_console, print_backups

    _, spec = find_site(project, inventory, site, vault_password_file)
    store = spec.store()
    rows = list_backups(store)
    if output == "json":
        _emit_json({"site": site, "location": store.location, "backups": [r.record() for r in rows]})
    else:
        print_backups(site, store.location, rows, make_console())


@backups.command("verify")
@SITE
@click.argument("backup_id", metavar="[ID]", required=False)
@click.option("--read-data", is_flag=True, help="Download and re-hash every byte (else: objects and sizes).")
@INVENTORY
@VAULT
@OUTPUT
@_pass_project
def backups_verify(
    project: Path,
    site: str,
    backup_id: str | None,
    read_data: bool,
    inventory: tuple[str, ...],
    vault_password_file: str | None,
    output: str,
) -> int:
    """Check SITE's backups (all, or ID): exit 1 naming the damaged files if any."""
    from .backup.catalog import find_site
    from .backup.manifest import find_backup
    from .backup.streams import Deadline
    from .backup.verify import verify_backups
    from .output import make_console, print_verify

    _, spec = find_site(project, inventory, site, vault_password_file)
    store = spec.store()
    cancel = threading.Event()
    _install_signal_handlers(cancel, make_console(stderr=True))
    wanted = [find_backup(store, backup_id).id] if backup_id else None
    report = verify_backups(store, wanted, Deadline(cancel), read_data=read_data)
    if output == "json":
        _emit_json({"site": site, **report.record()})
    else:
        print_verify(site, report, make_console())
    # no backup at all proves nothing restorable exists: a nightly check must notice
    return ExitCode.OK if report.ok and report.backups else ExitCode.SITE_FAILED


@backups.command("prune")
@SITE
@INVENTORY
@click.option("--dry-run", is_flag=True, help="Show what the retention policy would remove; remove nothing.")
@click.option("--ticket", metavar="ID", help="The ticket this belongs to (recorded in the change log).")
@IGNORE_WINDOW
@VAULT
@OUTPUT
@_pass_project
def backups_prune(
    project: Path,
    site: str,
    inventory: tuple[str, ...],
    dry_run: bool,
    ticket: str | None,
    ignore_window: bool,
    vault_password_file: str | None,
    output: str,
) -> int:
    """Apply SITE's backup.retention: runs the backup-prune runbook (recorded in the change log)."""
    from . import engine
    from .backup.catalog import find_site

    find_site(project, inventory, site, vault_password_file)
    options = engine.RunOptions(
        runbook="backup-prune",
        inventory=list(inventory),
        project=project,
        limit=site,
        dry_run=dry_run,
        ticket=ticket,
        ignore_window=ignore_window,
        vault_password_file=vault_password_file,
    )
    return _run_runbook(options, output)


@cli.command()
@SITE
@click.option(
    "--backup", "backup_id", default="latest", show_default=True, metavar="ID", help="Backup id or prefix."
)
@click.option("--to", "to", metavar="DIR", help="Put the files into DIR on the site's host, not the docroot.")
@click.option("--db", "db", metavar="NAME", help="Import the dump into database NAME, not the site's own.")
@click.option("--path", "paths", multiple=True, metavar="GLOB", help="Only these paths (repeatable).")
@click.option("--files-only", is_flag=True, help="Restore the files, not the database.")
@click.option("--db-only", is_flag=True, help="Restore the database, not the files.")
@click.option("--yes", is_flag=True, help="Restore over the live site without asking (cron, CI).")
@click.option("--dry-run", is_flag=True, help="Show what would be restored; change nothing.")
@click.option("--ticket", metavar="ID", help="The ticket this belongs to (recorded in the change log).")
@IGNORE_WINDOW
@INVENTORY
@VAULT
@OUTPUT
@_pass_project
def restore(
    project: Path,
    site: str,
    backup_id: str,
    to: str | None,
    db: str | None,
    paths: tuple[str, ...],
    files_only: bool,
    db_only: bool,
    yes: bool,
    dry_run: bool,
    ticket: str | None,
    ignore_window: bool,
    inventory: tuple[str, ...],
    vault_password_file: str | None,
    output: str,
) -> int:
    """Restore SITE from a backup: runs the restore runbook (locked, recorded in the change log)."""
    from . import engine
    from .backup.catalog import find_site
    from .backup.restore import restore_target

    _, spec = find_site(project, inventory, site, vault_password_file)
    target = restore_target(spec, to=to, db=db, paths=paths, files_only=files_only, db_only=db_only)
    if target.live and not yes and not dry_run:
        what = " and ".join(target.live)
        if not sys.stdin.isatty():
            raise BadInput(
                f"restoring backup '{backup_id}' over the live site '{site}' ({what}) needs confirmation.",
                fix="add --yes (cron, CI), or restore elsewhere: --to DIR for the files, --db NAME for "
                "the database.",
            )
        click.confirm(f"Overwrite {site}'s live {what} with backup '{backup_id}'?", abort=True, err=True)
    params = {
        "backup": backup_id,
        "to": to or "",
        "db": db or "",
        "paths": json.dumps(list(paths)),  # a JSON list: commas and brackets in globs stay intact
        "files": str(target.files).lower(),
        "database": str(target.database).lower(),
        # confirmed above; when nothing live is named, the site still checks that --to is not the docroot
        "overwrite_live": str(bool(target.live) or dry_run).lower(),
    }
    options = engine.RunOptions(
        runbook="restore",
        inventory=list(inventory),
        project=project,
        limit=site,
        params=params,
        dry_run=dry_run,
        ticket=ticket,
        ignore_window=ignore_window,
        vault_password_file=vault_password_file,
    )
    return _run_runbook(options, output)


# ------------------------------------------------------------------ log


@cli.group("log")
def log_group() -> None:
    """The change log, for people and for auditors."""


def _changelog(project: Path) -> Any:
    from .changelog import ChangeLog
    from .project import load_project

    return ChangeLog(load_project(project).settings.changelog)


@log_group.command("show")
@click.option("--site", help="Only runs that touched this site (glob), and only its rows.")
@click.option("--runbook", help="Only runs of this runbook: NAME (glob), NAME@1, NAME@1.1 or NAME@1.1.0.")
@click.option("--since", help="ISO date/time or a relative age like 7d, 12h.")
@click.option("--status", type=click.Choice(STATUSES), help="Run or site status.")
@click.option("--output", "-o", type=click.Choice(["text", "json", "csv"]), default="text", show_default=True)
@_pass_project
def log_show(
    project: Path, site: str | None, runbook: str | None, since: str | None, status: str | None, output: str
) -> None:
    """Runs in the change log, filtered; warns on stderr when the hash chain is broken."""
    from . import changelog
    from . import output as out

    entries, report = _changelog(project).query_checked(
        site=site, runbook=runbook, since=changelog.parse_since(since) if since else None, status=status
    )
    if output == "json":
        # Whole entries, exactly as recorded: an auditor re-computes each entry's hash from this
        # output, and an entry with its other sites cut away would look tampered with. The site
        # filter selects runs here; csv and text show only the matching sites' rows.
        if site is not None:
            click.echo(
                f"note: --site {site} selects runs; JSON entries are complete (other sites of those runs "
                "included) so their hashes can be checked. Use -o csv for the site's rows only.",
                err=True,
            )
        _emit_json(entries)
    elif output == "csv":
        changelog.to_csv(entries, sys.stdout, site=site)
    else:
        out.print_log([changelog.only_sites(e, site) for e in entries], out.make_console())
    if not report.ok:
        click.secho(
            f"warning: the change log's hash chain is broken at entry {report.first_bad_seq}: "
            f"{report.reason}. What is shown may have been altered; "
            "run 'maintainer log verify' for the full report.",
            err=True,
            fg="yellow",
        )


@log_group.command("verify")
@click.option(
    "--expect-head", metavar="HASH", help="The head hash recorded elsewhere: also detects truncation."
)
@OUTPUT
@_pass_project
def log_verify(project: Path, expect_head: str | None, output: str) -> int:
    """Prove that no entry was edited, removed, inserted or reordered (exit 0), else exit 1."""
    report = _changelog(project).verify(expect_head=expect_head)
    if output == "json":
        _emit_json(
            {
                "ok": report.ok,
                "entries": report.entries,
                "head_hash": report.head_hash,
                "first_bad_seq": report.first_bad_seq,
                "reason": report.reason,
            }
        )
    elif report.ok:
        click.echo(f"OK: {report.entries} entries, chain intact; head {report.head_hash}")
    else:
        # a cut tail has no bad entry to name: the reason says where the log ends instead
        first = f" (first bad entry: {report.first_bad_seq})" if report.first_bad_seq is not None else ""
        click.secho(f"TAMPERED: {report.reason}{first}", fg="red", err=True)
    return ExitCode.OK if report.ok else ExitCode.SITE_FAILED


# ------------------------------------------------------------------ drills


@cli.group()
def drills() -> None:
    """Restore drills: what the change log proves per site (run them: maintainer run restore-drill)."""


@drills.command("report")
@click.option(
    "-i",
    "--inventory",
    "inventory",
    multiple=True,
    metavar="INV",
    help="Report on this inventory's sites (repeatable): sites never drilled show as 'never', SLA targets "
    "from their sla vars. Without it: every site the change log has a drill of.",
)
@LIMIT
@click.option(
    "--output",
    "-o",
    type=click.Choice(["text", "json", "html"]),
    default="text",
    show_default=True,
    help="json: one JSON document (schema in docs/DRILLS.md); html: one self-contained page for auditors.",
)
@click.option(
    "--out",
    "out_file",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    metavar="FILE",
    help="Write the json or html document to FILE instead of stdout.",
)
@click.option(
    "--stale-after",
    default="8d",
    show_default=True,
    metavar="AGE",
    help="A site whose last drill is older than this is 'stale' (8d: a weekly drill missed).",
)
@click.option(
    "--since",
    default="90d",
    show_default=True,
    metavar="WHEN",
    help="Count drills and the pass rate from this age or ISO date ('all': the whole log).",
)
@click.option(
    "--check",
    is_flag=True,
    help="Exit 1 when a site is failed, sla_missed, stale or never drilled, or the log's hash chain "
    "did not verify (for cron and CI). Without it the exit code is 0 whenever the report is made.",
)
@click.option(
    "--expect-head",
    metavar="HASH",
    help="A head hash kept outside the log (from 'log verify'): entries cut from the end show as unverified.",
)
@VAULT
@_pass_project
def drills_report(
    project: Path,
    inventory: tuple[str, ...],
    limit: str | None,
    output: str,
    out_file: Path | None,
    stale_after: str,
    since: str,
    check: bool,
    expect_head: str | None,
    vault_password_file: str | None,
) -> int:
    """Per site: the last restore drill, its outcome, RTO/RPO against the SLA, days since the last pass."""
    from . import drill_report
    from .inventory import load_inventory
    from .output import make_console
    from .project import load_project

    if out_file is not None and output == "text":
        raise BadInput("--out writes a document: it needs --output html or --output json.", key="--out")
    if limit is not None and not inventory:
        raise BadInput("--limit selects sites of an inventory.", key="--limit", fix="add -i INVENTORY.")
    proj = load_project(project)
    inv = (
        load_inventory(proj.inventory_sources(inventory), vault_password_file=vault_password_file)
        if inventory
        else None
    )
    report = drill_report.make_report(
        proj.settings.changelog,
        inventory=inv,
        limit=limit,
        stale_after=stale_after,
        since=since,
        expect_head=expect_head,
    )
    if output == "text":
        drill_report.print_report(report, make_console())
    else:
        document = (
            drill_report.render_html(report)
            if output == "html"
            else json.dumps(report.record(), indent=2, sort_keys=True, default=str) + "\n"
        )
        if out_file is None:
            click.echo(document, nl=False)
        else:
            try:
                out_file.write_text(document, encoding="utf-8")
            except OSError as exc:
                raise BadInput(
                    f"cannot write the report to {out_file}: {exc.strerror or exc}.",
                    key="--out",
                    fix="give a file in an existing, writable directory.",
                ) from None
            click.echo(f"wrote {out_file}: {report.summary_line()}", err=True)
    if not report.verified:
        click.secho(
            f"warning: {report.chain_line()} Run 'maintainer log verify' for the full report.",
            err=True,
            fg="yellow",
        )
    return ExitCode.SITE_FAILED if check and report.check_failed() else ExitCode.OK


def main() -> None:
    cli.main(prog_name="maintainer")
