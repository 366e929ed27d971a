"""``perf_configs``: render tuned server configs from the site's facts, validate them all, install them.

Each entry of ``files`` is one component's config (``nginx``, ``php_fpm``, ``opcache``,
``mariadb``, or any name): a Jinja2 file under templates/ rendered with the step's context
plus ``facts`` (what the host has), ``tune`` (the tuned values) and ``why`` (each value's
reason), so the reasons can go into the file as comments. ``merge`` says what the rendering is:

- ``none``: the whole file, maintainer's own (a drop-in such as conf.d/90-maintainer-opcache.ini);
- ``ini`` / ``nginx``: only the settings maintainer manages, written into the server's existing
  file (a PHP-FPM pool, nginx.conf) by ``perf.merge``: every other line of it is kept as it is,
  so the operator's settings survive and the diff shows the real change only.

Every changed file is validated on a temp copy beside it (``validate``, ``%s`` is the copy)
before any is written: one bad file and nothing is installed. The previous versions are put
back when the site fails later in the run (from memory), and kept on the site for a rollback
by hand: ``backup_dir/<run-id>/<the file's absolute path>`` (default
``~/.maintainer/config-backups``, mode 0700), the last ``keep_backups`` runs that changed
something; older run folders there are removed.

``applies`` says when the server uses a changed file: at the graceful ``reload`` that follows
(nginx, PHP-FPM) or only at a ``restart`` (MariaDB reads its config when it starts). A
restart-only file is active now only if the run restarts that server (``restarted``);
otherwise it is reported as ``pending_restart``: installed, not active, not measured. The
outputs ``applied_components`` (what a measurement after the reloads measures) and
``pending_restart`` let the runbook measure only what is live and say what is not.

A file whose only differences are comment lines (``#`` or ``;`` first) is left as it is: the
reasons name measured inputs (worker sizes, data size) that move a little from run to run, and
a re-run that would change no value changes nothing. A file's comments give the reasons of
when its values were last set.

A dry run reads the facts, computes the same values and shows every file's diff.
"""

from __future__ import annotations

import difflib
import hashlib
import posixpath
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from jinja2 import TemplateError, TemplateNotFound
from pydantic import Field

from .. import templating
from ..errors import BadInput, StepCancelled, StepFailed
from ..perf import merge, tuning
from ..perf.facts import Facts
from .base import Action, ActionResult, Args, StepContext, tail
from .perf_facts import facts_of
from .template import _file_mode, _mode, templates_dir

if TYPE_CHECKING:
    from ..inventory import Site

#: the inventory var that pins values for a site, e.g. {pm_max_children: 20}
SITE_PINS = "perf_tuning"
_STATE = "perf_configs_previous"
#: where the previous files are kept on the site, one folder per run (``~``: the SSH user's home)
DEFAULT_BACKUP_DIR = "~/.maintainer/config-backups"
#: the run folders under backup_dir that pruning may remove (run ids: 20261129T221500Z-a1b2c3)
_RUN_FOLDER = r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]+$"
_BACKUP_SCRIPT = r"""
dir=$1 run=$2
case $dir in "~") dir=$HOME ;; "~/"*) dir=$HOME/${dir#"~/"} ;; esac
umask 077
mkdir -p -- "$dir/$run" && cd -- "$dir/$run" && pwd -P
"""
#: argv: backup_dir keep run-folder-pattern; prints the run folders it removed
_PRUNE_SCRIPT = r"""
dir=$1 keep=$2 pattern=$3
case $dir in "~") dir=$HOME ;; "~/"*) dir=$HOME/${dir#"~/"} ;; esac
cd -- "$dir" 2>/dev/null || exit 0
ls -1 | grep -E -- "$pattern" | sort | head -n -"$keep" | while IFS= read -r old; do
    rm -rf -- "$old" && echo "$old"
done
"""


class ConfigFile(Args):
    src: str  # relative to the project's templates/
    dest: str
    validate_cmd: str | None = Field(default=None, alias="validate")
    mode: str | int | None = None  # the existing file's mode is kept when unset
    #: lines starting with these (after blanks) are comments: changing only them changes nothing
    comments: list[str] = Field(default_factory=lambda: ["#", ";"])
    #: none: the rendering is the whole file; ini/nginx: settings written into the existing file
    merge: Literal["none", "ini", "nginx"] = "none"
    #: when the server uses the file: at the reload after this step, or only when it restarts
    applies: Literal["reload", "restart"] = "reload"


class PerfConfigsArgs(Args):
    #: component -> its config file
    files: dict[str, ConfigFile]
    #: which of ``files`` to render (default: all)
    components: list[str] | None = None
    #: tuned values to replace for this run ('auto' or null: computed)
    overrides: dict[str, Any] = Field(default_factory=dict)
    php_memory_percent: int | None = Field(default=None, ge=5, le=90)
    db_memory_percent: int = Field(default=25, ge=5, le=90)
    children_per_cpu: int = Field(default=8, ge=1, le=100)
    #: the PHP worker size to assume when none is running to be measured (MB)
    worker_mb: int | None = Field(default=None, ge=4, le=4096)
    #: components whose server this run restarts (their ``applies: restart`` files are live after it)
    restarted: list[str] = Field(default_factory=list)
    #: keep the previous files on the site for a rollback by hand (see backup_dir)
    backup: bool = True
    backup_dir: str = Field(default=DEFAULT_BACKUP_DIR, min_length=1)
    #: how many runs' backups are kept in backup_dir (the oldest run folders beyond are removed)
    keep_backups: int = Field(default=5, ge=1, le=1000)


@dataclass
class _Rendered:
    component: str
    spec: ConfigFile
    old: bytes | None
    new: bytes

    @property
    def changed(self) -> bool:
        """Whether a setting differs (comments aside)."""
        if self.old is None:
            return True
        return _settings(self.old, self.spec.comments) != _settings(self.new, self.spec.comments)


def _settings(data: bytes, comments: list[str]) -> list[str]:
    """The lines that say something to the server: no comments, no blank lines."""
    prefixes = tuple(c for c in comments if c)
    lines = (line.strip() for line in data.decode("utf-8", "replace").splitlines())
    return [line for line in lines if line and not (prefixes and line.startswith(prefixes))]


def _pending_note(component: str) -> str:
    """What a restart-only change means: 'pending restart: MariaDB reads it when it starts ...'."""
    server = tuning.REQUIRES.get(component, (None, "the server"))[1]
    return f"pending restart: {server} reads it when it starts, so it is not active and not measured yet"


def _sha(data: bytes | None) -> str | None:
    return hashlib.sha256(data).hexdigest() if data is not None else None


def _diff(item: _Rendered) -> str:
    return "".join(
        difflib.unified_diff(
            (item.old or b"").decode("utf-8", "replace").splitlines(keepends=True),
            item.new.decode("utf-8", "replace").splitlines(keepends=True),
            fromfile=f"{item.spec.dest} (current)" if item.old is not None else "/dev/null",
            tofile=f"{item.spec.dest} (rendered)",
        )
    )


class PerfConfigsAction(Action):
    name = "perf_configs"
    Args = PerfConfigsArgs
    undoable = True
    summary = (
        "render tuned nginx/PHP-FPM/OPcache/MariaDB configs from the host's facts, validate all, install"
    )

    def check_site(self, site: Site, args: PerfConfigsArgs, project_dir: Path) -> None:
        unknown_components = sorted(set(args.components or []) - set(args.files))
        if unknown_components:
            raise BadInput(
                f"perf_configs: components {', '.join(unknown_components)} have no entry in 'files'.",
                fix=f"choose from {', '.join(args.files)}.",
            )
        pins = site.vars.get(SITE_PINS)
        if pins is not None and not isinstance(pins, dict):
            raise BadInput(f"site '{site.name}': {SITE_PINS} must be a mapping of value names to values.")
        for source, names in ((f"site '{site.name}' {SITE_PINS}", pins or {}), ("overrides", args.overrides)):
            bad = tuning.unknown(names)
            if bad:
                close = {n: difflib.get_close_matches(n, sorted(tuning.KNOBS), 1) for n in bad}
                hints = ", ".join(f"{n} (did you mean {c[0]}?)" if c else n for n, c in close.items())
                raise BadInput(
                    f"{source} names no tunable value: {hints}.",
                    fix=f"tunable values: {', '.join(sorted(tuning.KNOBS))}.",
                )
            wrong = tuning.invalid(names)
            if wrong:
                raise BadInput(
                    f"{source}: {'; '.join(wrong)}.",
                    fix="give a value of the right type and range, or 'auto' to keep it computed.",
                )

    # ------------------------------------------------------------ shared by dry run and run

    def _tune(self, ctx: StepContext, args: PerfConfigsArgs, facts: Facts) -> dict[str, tuning.Knob]:
        policy = tuning.Policy(
            php_memory_percent=args.php_memory_percent,
            db_memory_percent=args.db_memory_percent,
            children_per_cpu=args.children_per_cpu,
            worker_mb=args.worker_mb,
        )
        pins = tuning.pins_of(ctx.site.vars.get(SITE_PINS), args.overrides)
        too_big = tuning.beyond_ram(pins, facts.mem_total_mb)
        if too_big:
            raise StepFailed(
                f"pinned values do not fit this host, nothing was installed: {'; '.join(too_big)}"
            )
        return tuning.compute(facts, policy, pins)

    def _selected(self, args: PerfConfigsArgs, facts: Facts) -> tuple[list[str], dict[str, str]]:
        """The components to render, and those skipped because their server is not installed."""
        explicit = args.components is not None
        chosen = args.components if args.components is not None else list(args.files)
        selected, skipped = [], {}
        for component in chosen:
            fact, label = tuning.REQUIRES.get(component, (None, ""))
            if fact is not None and getattr(facts, fact) is None:
                skipped[component] = f"{label} is not installed on this host"
            else:
                selected.append(component)
        if explicit and skipped:  # asked for by name: not tuning it is no success
            raise StepFailed(
                "cannot tune the requested "
                + "; ".join(f"{component}: {why}" for component, why in skipped.items())
                + " (nothing was installed; leave it out of 'components')",
                outputs={"skipped": skipped},
            )
        return selected, skipped

    def _render(
        self, ctx: StepContext, component: str, spec: ConfigFile, facts: Facts, knobs: dict[str, tuning.Knob]
    ) -> bytes:
        root = templates_dir(ctx.project_dir)
        try:
            template = templating.file_template(root, spec.src)
            return template.render(
                **ctx.variables,
                facts=facts.as_dict(),
                tune={name: knob.value for name, knob in knobs.items()},
                why={name: knob.reason for name, knob in knobs.items()},
            ).encode()
        except TemplateNotFound as exc:
            raise StepFailed(f"{component}: template '{spec.src}' not found under {root}") from exc
        except TemplateError as exc:
            lineno = getattr(exc, "lineno", None)
            where = f"{spec.src}:{lineno}" if lineno else spec.src
            raise StepFailed(f"{component}: template {where}: {exc}") from exc

    def _prepare(
        self, ctx: StepContext, args: PerfConfigsArgs, facts: Facts
    ) -> tuple[dict[str, tuning.Knob], list[_Rendered], dict[str, str]]:
        knobs = self._tune(ctx, args, facts)
        selected, skipped = self._selected(args, facts)
        rendered = []
        for component in selected:
            spec = args.files[component]
            new = self._render(ctx, component, spec, facts, knobs)
            old = ctx.transport.read_file(spec.dest)
            if spec.merge != "none":
                new = self._merged(component, spec, old, new)
            rendered.append(_Rendered(component, spec, old, new))
        return knobs, rendered, skipped

    def _merged(self, component: str, spec: ConfigFile, old: bytes | None, fragment: bytes) -> bytes:
        """The existing file with the rendered settings written into it (merge: ini or nginx)."""
        if old is None:
            raise StepFailed(
                f"{component}: {spec.dest} does not exist; perf-tune writes its settings into the server's "
                f"own file (merge: {spec.merge}) and does not create one: point the site's var at the "
                "file the server reads, or leave the component out of 'components'"
            )
        current = old.decode("utf-8", "replace")
        try:
            if spec.merge == "nginx":
                return merge.merge_nginx(current, fragment.decode()).encode()
            return merge.merge_ini(current, fragment.decode(), comments=tuple(spec.comments)).encode()
        except merge.MergeError as exc:
            raise StepFailed(
                f"{component}: cannot write the tuned settings into {spec.dest}: {exc}; nothing was "
                "installed (fix the file, check it with the server's own test, e.g. nginx -t)"
            ) from None

    @staticmethod
    def _live(args: PerfConfigsArgs, items: list[_Rendered]) -> tuple[list[str], list[str]]:
        """Of the changed components: (active after this run's reloads/restarts, pending a restart)."""
        live: list[str] = []
        pending: list[str] = []
        for item in items:
            waits = item.spec.applies == "restart" and item.component not in args.restarted
            (pending if waits else live).append(item.component)
        return live, pending

    def _summary(
        self, args: PerfConfigsArgs, knobs: dict[str, tuning.Knob], rendered: list[_Rendered], verb: str
    ) -> str:
        live, pending = self._live(args, [r for r in rendered if r.changed])
        parts = [f"{verb} {', '.join(live)}"] if live else []
        parts += [f"{verb} {component}, {_pending_note(component)}" for component in pending]
        head = "; ".join(parts) if parts else "no config changes"
        return f"{head}. Values: {tuning.summary(knobs, [r.component for r in rendered])}"

    # ------------------------------------------------------------ dry run

    def dry_run(self, ctx: StepContext, args: PerfConfigsArgs) -> dict[str, Any]:
        facts = facts_of(ctx)
        knobs, rendered, skipped = self._prepare(ctx, args, facts)
        for item in rendered:
            folder = posixpath.dirname(item.spec.dest) or "."
            if item.changed and not ctx.transport.run(["test", "-d", folder, "-a", "-w", folder]).ok:
                raise StepFailed(
                    f"{item.component}: cannot write {item.spec.dest}: {folder} is not a writable directory"
                )
        rejected = {}
        live, pending = self._live(args, [r for r in rendered if r.changed])
        for item in rendered:
            if item.changed and item.spec.validate_cmd:
                refused = self._check(ctx, item, dry_run=True)
                if refused:
                    rc, output = refused
                    rejected[item.component] = f"{item.component} (rc {rc}): {tail(output)}"
        summary = self._summary(args, knobs, rendered, "would change")
        if rejected:
            summary = "would be rejected by validation: " + "; ".join(rejected.values()) + f" ({summary})"
        return {
            "summary": summary,
            "rejected": rejected,
            "changed_components": [r.component for r in rendered if r.changed],
            "applied_components": live,
            "pending_restart": pending,
            "skipped": skipped,
            "tuning": {name: knob.as_dict() for name, knob in knobs.items()},
            "diff": ctx.redactor.text("".join(_diff(r) for r in rendered if r.changed)),
        }

    # ------------------------------------------------------------ run

    def run(self, ctx: StepContext, args: PerfConfigsArgs) -> ActionResult:
        facts = facts_of(ctx)
        knobs, rendered, skipped = self._prepare(ctx, args, facts)
        modes = {r.component: _mode(r.spec.mode) for r in rendered}
        old_modes = {
            r.component: _file_mode(ctx, r.spec.dest) if r.old is not None else None for r in rendered
        }
        todo = [
            r
            for r in rendered
            if r.changed or (modes[r.component] is not None and modes[r.component] != old_modes[r.component])
        ]
        for item in todo:  # all validated before any is installed
            if item.spec.validate_cmd:
                self._validate(ctx, item)
        backup_folder, backups = self._backup(ctx, args, todo)
        pruned = self._prune(ctx, args) if backups else []
        previous = ctx.state.setdefault(_STATE, {})
        written: list[_Rendered] = []
        try:
            for item in todo:
                previous[item.spec.dest] = (item.old, old_modes[item.component])
                ctx.transport.write_file(item.spec.dest, item.new, modes[item.component])
                written.append(item)
        except BaseException:
            for item in reversed(written):  # none or all: a half-tuned host is no state to leave
                self._restore(ctx, item.spec.dest)
            raise
        live, pending = self._live(args, todo)
        for item in todo:
            when = (
                _pending_note(item.component)
                if item.component in pending
                else "active after the reload"
                if item.spec.applies == "reload"
                else "active after the restart"
            )
            ctx.log(f"{item.component}: installed {item.spec.dest}, {when}")
        changed_components = [r.component for r in todo]
        outputs: dict[str, Any] = {
            "summary": self._summary(args, knobs, rendered, "changed"),
            "changed": bool(todo),
            "changed_components": changed_components,
            "applied_components": live,
            "pending_restart": pending,
            "backup_folder": backup_folder,
            "backups_pruned": pruned,
            "skipped": skipped,
            "facts": facts.as_dict(),
            "tuning": {name: knob.value for name, knob in knobs.items()},
            "reasons": {name: knob.reason for name, knob in knobs.items()},
            "files": {
                r.component: {
                    "dest": r.spec.dest,
                    "sha256": _sha(r.new),
                    "changed": r.component in changed_components,
                    "backup": backups.get(r.component),
                }
                for r in rendered
            },
        }
        changes = [
            {
                "kind": "file",
                "component": item.component,
                "path": item.spec.dest,
                "before_sha256": _sha(item.old),
                "after_sha256": _sha(item.new),
                "before_mode": None
                if old_modes[item.component] is None
                else f"{old_modes[item.component]:04o}",
                "after_mode": f"{modes[item.component] or old_modes[item.component] or 0o644:04o}",
                "backup": backups.get(item.component),
                "applies": item.spec.applies,
                "pending_restart": item.component in pending,
                **(
                    {
                        "summary": f"{item.component}: installed {item.spec.dest}, "
                        f"{_pending_note(item.component)}"
                    }
                    if item.component in pending
                    else {}
                ),
                "diff": ctx.redactor.text(_diff(item)),
            }
            for item in todo
        ]
        return ActionResult(outputs=outputs, changes=changes, changed=bool(todo))

    def _backup(
        self, ctx: StepContext, args: PerfConfigsArgs, todo: list[_Rendered]
    ) -> tuple[str | None, dict[str, str]]:
        """Copy the files about to be replaced to ``backup_dir/<run-id>/<path>``: (folder, copies)."""
        keep = [item for item in todo if item.old is not None]
        if not args.backup or not keep:
            return None, {}
        made = ctx.transport.run(
            ["bash", "-c", _BACKUP_SCRIPT, "maintainer-backup", args.backup_dir, ctx.run.id]
        )
        folder = made.stdout.strip()
        if not made.ok or not folder:
            raise StepFailed(
                f"cannot make the backup folder {args.backup_dir}/{ctx.run.id} on the site, nothing was "
                f"installed: {tail(made.stderr or made.stdout)} (set the site var "
                "maintainer_config_backup_dir to a writable directory)"
            )
        copies = {}
        for item in keep:
            copy = posixpath.join(folder, posixpath.normpath("/" + item.spec.dest).lstrip("/"))
            ctx.sh(["bash", "-c", 'umask 077 && mkdir -p -- "$1"', "mkdir", posixpath.dirname(copy)])
            ctx.transport.write_file(copy, item.old or b"", 0o600)
            copies[item.component] = copy
        ctx.log(f"kept the previous {', '.join(copies)} files in {folder} (for a rollback by hand)")
        return folder, copies

    def _prune(self, ctx: StepContext, args: PerfConfigsArgs) -> list[str]:
        """Remove the run folders in backup_dir beyond the newest ``keep_backups``: the ones removed."""
        result = ctx.transport.run(
            [
                "bash",
                "-c",
                _PRUNE_SCRIPT,
                "maintainer-prune",
                args.backup_dir,
                str(args.keep_backups),
                _RUN_FOLDER,
            ]
        )
        pruned = result.stdout.split()
        if pruned:
            ctx.log(f"removed the backups of {len(pruned)} older run(s) from {args.backup_dir}")
        return pruned

    def _validate(self, ctx: StepContext, item: _Rendered) -> None:
        refused = self._check(ctx, item, dry_run=False)
        if refused:
            rc, output = refused
            raise StepFailed(
                f"{item.component}: validation of {item.spec.dest} failed (rc {rc}), nothing was "
                f"installed: {tail(output)}",
                outputs={"component": item.component, "rc": rc, "stderr": output},
            )

    def _check(self, ctx: StepContext, item: _Rendered, *, dry_run: bool) -> tuple[int, str] | None:
        """Run ``validate`` on a temp copy of the rendered file: (rc, output) if refused, None if accepted.

        The run writes the copy beside the destination (the validator may resolve includes relative
        to it); a dry run touches nothing near the live configs: its copy goes into a private temp
        directory (``mktemp -d``, mode 0700) that is removed afterwards.
        """
        command = item.spec.validate_cmd or ""
        if "%s" not in command:
            raise StepFailed(f"{item.component}: 'validate' must contain %s (the rendered temp file)")
        dest = Path(item.spec.dest)
        folder: str | None = None
        if dry_run:
            made = ctx.transport.run(["mktemp", "-d", "/tmp/maintainer-perf.XXXXXXXX"])
            if not made.ok or not made.stdout.strip():
                return made.rc, f"could not make a temp directory to validate in: {made.stderr}"
            folder = made.stdout.strip()
            candidate = posixpath.join(folder, dest.name)
        else:
            candidate = str(dest.with_name(f".{dest.name}.{ctx.run.id}.candidate"))
        try:
            ctx.transport.write_file(candidate, item.new, _mode(item.spec.mode) or 0o600)
            result = ctx.transport.run(
                command.replace("%s", shlex.quote(candidate)), timeout=ctx.timeout, cancel=ctx.cancel
            )
        finally:
            ctx.transport.run(["rm", "-rf", folder] if folder else ["rm", "-f", candidate])
        if result.cancelled:
            raise StepCancelled(f"{item.component}: stopped while validating {item.spec.dest}")
        if result.rc != 0 or result.timed_out:
            return result.rc, result.stderr or result.stdout
        return None

    def _restore(self, ctx: StepContext, dest: str) -> None:
        previous, previous_mode = ctx.state.get(_STATE, {}).get(dest, (None, None))
        if previous is None:
            ctx.transport.run(["rm", "-f", dest])
        else:
            ctx.transport.write_file(dest, previous, previous_mode)

    def undo(self, ctx: StepContext, args: PerfConfigsArgs, result: ActionResult) -> bool:
        for component, info in result.outputs.get("files", {}).items():
            if info.get("changed"):
                self._restore(ctx, info["dest"])
                ctx.log(f"{component}: restored the previous {info['dest']}")
        return True
