"""``template``: render a Jinja2 file from templates/ and put it on the site.

Like Ansible's template module: the rendered file is validated first (the
``validate`` command gets the temp file as ``%s``), written atomically, and
the previous version is kept beside it so a failed run can put it back.
"""

from __future__ import annotations

import difflib
import hashlib
import posixpath
import shlex
from pathlib import Path
from typing import Any

from jinja2 import TemplateError, TemplateNotFound
from pydantic import Field

from .. import templating
from ..errors import StepFailed
from .base import Action, ActionResult, Args, StepContext, tail


class TemplateArgs(Args):
    src: str  # relative to the project's templates/
    dest: str
    mode: str | int | None = None  # e.g. "0644"; the existing file's mode is kept when unset
    validate_cmd: str | None = Field(default=None, alias="validate")
    vars: dict[str, Any] = Field(default_factory=dict)
    backup: bool = True


def templates_dir(project_dir: Path) -> Path:
    """Where ``src`` is looked up: the project's templates/."""
    return project_dir / "templates"


def _sha(data: bytes | None) -> str | None:
    return hashlib.sha256(data).hexdigest() if data is not None else None


def _file_mode(ctx: StepContext, path: str) -> int | None:
    """The file's permission bits on the site (GNU stat), or None if it cannot be read."""
    result = ctx.transport.run(["stat", "-c", "%a", path])
    return int(result.stdout.strip(), 8) if result.ok and result.stdout.strip() else None


def _mode(value: str | int | None) -> int | None:
    if value is None:
        return None
    return int(value, 8) if isinstance(value, str) else value


class TemplateAction(Action):
    name = "template"
    Args = TemplateArgs
    undoable = True
    summary = "render templates/SRC with Jinja2, validate, upload atomically, keep the previous version"

    def render(self, ctx: StepContext, args: TemplateArgs) -> bytes:
        # templating.file_template is also what `runbooks validate` checks, so a file that
        # validates is found, parsed and sees the same names here
        root = templates_dir(ctx.project_dir)
        try:
            template = templating.file_template(root, args.src)
            return template.render(**ctx.variables, vars=args.vars).encode()
        except TemplateNotFound as exc:
            raise StepFailed(f"template '{args.src}' not found under {root}") from exc
        except TemplateError as exc:
            lineno = getattr(exc, "lineno", None)
            where = f"{args.src}:{lineno}" if lineno else args.src
            raise StepFailed(f"template {where}: {exc}") from exc

    def dry_run(self, ctx: StepContext, args: TemplateArgs) -> dict[str, Any]:
        new = self.render(ctx, args)
        old = ctx.transport.read_file(args.dest)
        folder = posixpath.dirname(args.dest) or "."
        # the real run writes a temp file beside dest: a plan that could not be applied is no plan
        check = ctx.transport.run(["test", "-d", folder, "-a", "-w", folder])
        if not check.ok:
            raise StepFailed(f"cannot write {args.dest}: {folder} is not a writable directory on this site")
        diff = difflib.unified_diff(
            (old or b"").decode("utf-8", "replace").splitlines(keepends=True),
            new.decode("utf-8", "replace").splitlines(keepends=True),
            fromfile=f"{args.dest} (current)" if old is not None else "/dev/null",
            tofile=f"{args.dest} (rendered)",
        )
        return {"dest": args.dest, "changed": old != new, "diff": ctx.redactor.text("".join(diff))}

    def run(self, ctx: StepContext, args: TemplateArgs) -> ActionResult:
        new = self.render(ctx, args)
        old = ctx.transport.read_file(args.dest)
        old_mode = _file_mode(ctx, args.dest) if old is not None else None
        mode = _mode(args.mode)
        changed = old != new or (mode is not None and mode != old_mode)
        outputs: dict[str, Any] = {"dest": args.dest, "sha256": _sha(new), "changed": changed}
        if not changed:
            return ActionResult(outputs=outputs)
        if args.validate_cmd:
            self._validate(ctx, args, new)
        backup_path = None
        if old is not None and args.backup:
            backup_path = f"{args.dest}.{ctx.run.id}.bak"
            ctx.transport.write_file(backup_path, old, 0o600)
        ctx.transport.write_file(args.dest, new, mode)
        ctx.state.setdefault("template_previous", {})[args.dest] = (old, old_mode)
        outputs["backup"] = backup_path
        return ActionResult(
            outputs=outputs,
            changed=True,
            changes=[
                {
                    "kind": "file",
                    "path": args.dest,
                    "before_sha256": _sha(old),
                    "after_sha256": _sha(new),
                    "before_mode": None if old_mode is None else f"{old_mode:04o}",
                    "after_mode": f"{mode if mode is not None else old_mode or 0o644:04o}",
                    "backup": backup_path,
                }
            ],
        )

    def _validate(self, ctx: StepContext, args: TemplateArgs, new: bytes) -> None:
        if "%s" not in args.validate_cmd:  # type: ignore[operator]
            raise StepFailed("template 'validate' must contain %s (the rendered temp file)")
        dest = Path(args.dest)
        candidate = str(dest.with_name(f".{dest.name}.{ctx.run.id}.candidate"))
        ctx.transport.write_file(candidate, new, _mode(args.mode) or 0o600)
        try:
            command = args.validate_cmd.replace("%s", shlex.quote(candidate))  # type: ignore[union-attr]
            result = ctx.transport.run(command, timeout=ctx.timeout, cancel=ctx.cancel)
        finally:
            ctx.transport.run(["rm", "-f", candidate])
        if result.rc != 0 or result.timed_out:
            raise StepFailed(
                f"validation of {args.dest} failed (rc {result.rc}): {tail(result.stderr or result.stdout)}",
                outputs={"rc": result.rc, "stderr": result.stderr},
            )

    def undo(self, ctx: StepContext, args: TemplateArgs, result: ActionResult) -> bool:
        if not result.changed:
            return True
        previous, previous_mode = ctx.state.get("template_previous", {}).get(args.dest, (None, None))
        if previous is None:
            ctx.transport.run(["rm", "-f", args.dest])
        else:  # content and mode as they were: a step may have changed only the mode
            ctx.transport.write_file(args.dest, previous, previous_mode)
        return True
