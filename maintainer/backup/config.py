"""A site's backup settings, read from its inventory vars.

::

    docroot: /var/www/shop
    backup:
      target: s3://acme-backups/sites        # or file:///srv/backups
      exclude: [wp-content/cache, "*.log"]
      retention: {keep_last: 3, keep_daily: 14, keep_weekly: 8, keep_monthly: 12}
      s3: {region: eu-central-1, sse: AES256, storage_class: STANDARD_IA}
    db: {engine: mariadb, name: shop, user: shop, password: "{{ vault_shop_db_password }}", host: 127.0.0.1}

Every problem is ``BadInput`` naming the site and the key, before anything runs.
"""

from __future__ import annotations

import posixpath
import types
from dataclasses import dataclass
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import BadInput, did_you_mean
from ..inventory import Site
from .database import DatabaseSettings
from .retention import RetentionPolicy
from .store import S3Settings, Store, open_store


class BackupSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target: str
    #: back up this directory instead of the docroot: a Composer project (Drupal's composer.json,
    #: composer.lock and vendor/ beside a web/ docroot), which an update's rollback must restore whole
    root: str | None = None
    #: a pattern with a '/' matches the path from the docroot, one without matches a name anywhere
    exclude: list[str] = Field(default_factory=list)
    retention: RetentionPolicy = Field(default_factory=RetentionPolicy)
    s3: S3Settings | None = None
    #: zstd level: 1-3 is fast, 19 is small
    compression_level: int = Field(default=3, ge=1, le=19)
    #: new content is cut into packs of about this many bytes (before compression)
    pack_size: int = Field(default=64 * 1024 * 1024, ge=1024 * 1024)
    #: stay on the docroot's file system, like ``find -xdev``
    one_file_system: bool = True


@dataclass
class SiteBackup:
    """What to back up for one site, and where to."""

    site: str
    #: the directory backed up and restored: backup.root, else the site's docroot
    docroot: str | None
    settings: BackupSettings
    db: DatabaseSettings | None
    #: the site's own docroot (what a web server serves), inside ``docroot``
    web_root: str | None = None

    def web_subdir(self) -> str:
        """Where the served docroot is inside the backed-up tree ('' when they are the same)."""
        if not self.docroot or not self.web_root:
            return ""
        rel = posixpath.relpath(posixpath.normpath(self.web_root), posixpath.normpath(self.docroot))
        return "" if rel == "." else rel

    def store(self) -> Store:
        return open_store(self.settings.target, self.site, self.settings.s3)


def site_backup(site: Site) -> SiteBackup:
    raw = site.vars.get("backup")
    if raw is None or (isinstance(raw, dict) and "target" not in raw):
        raise BadInput(
            f"site '{site.name}' has no backup target.",
            key="backup.target",
            fix="set backup.target in its inventory vars to s3://BUCKET/PREFIX or file:///ABSOLUTE/PATH.",
        )
    settings = _parse(site.name, "backup", BackupSettings, raw)  # not a mapping: says so
    db_raw = site.vars.get("db")
    db = _parse(site.name, "db", DatabaseSettings, db_raw) if db_raw else None
    docroot = site.vars.get("docroot")
    if docroot is not None and not str(docroot).startswith("/"):
        raise BadInput(
            f"site '{site.name}': docroot '{docroot}' is not an absolute path.",
            key="docroot",
            fix="give the docroot's absolute path on the site's host.",
        )
    if docroot is None and db is None:
        raise BadInput(
            f"site '{site.name}' has neither a docroot nor a db: there is nothing to back up.",
            key="docroot",
            fix="set docroot (the site's files) and/or db (its database) in the inventory.",
        )
    web_root = str(docroot) if docroot is not None else None
    root = settings.root
    if root is not None:
        norm_root = posixpath.normpath(root)
        if not root.startswith("/") or (
            web_root is not None
            and posixpath.commonpath([norm_root, posixpath.normpath(web_root)]) != norm_root
        ):
            raise BadInput(
                f"site '{site.name}': backup.root '{root}' must be an absolute path that holds the docroot"
                f" ({web_root}).",
                key="backup.root",
                fix="set backup.root to the project directory the docroot is in (e.g. /var/www/shop for "
                "/var/www/shop/web), or remove it to back up the docroot.",
            )
        return SiteBackup(site.name, norm_root, settings, db, web_root)
    return SiteBackup(site.name, web_root, settings, db, web_root)


def check_site_backup(site: Site) -> tuple[SiteBackup, Store]:
    """Everything about a site's backup settings that can be checked before a run: BadInput if wrong.

    The store is set up too (no request is sent), so a missing credential or a malformed target
    stops the run at plan time, naming the site. Returns both, for checks that go further.
    """
    spec = site_backup(site)
    try:
        return spec, spec.store()
    except BadInput as exc:
        if site.name not in exc.message:
            exc.message = f"site '{site.name}': {exc.message}"
        raise


def _parse(site: str, prefix: str, model: type[BaseModel], raw: Any) -> Any:
    if not isinstance(raw, dict):
        raise BadInput(
            f"site '{site}': '{prefix}' must be a mapping, got {type(raw).__name__}.",
            key=prefix,
            fix=f"write {prefix} as a YAML mapping of its keys.",
        )
    try:
        return model.model_validate(raw)
    except BadInput as exc:  # raised by a model's own validator (e.g. S3Settings' key pairs)
        if f"site '{site}'" not in exc.message:
            exc.message = f"site '{site}': {exc.message}"
        raise
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [str(p) for p in err["loc"]]
        key = ".".join([prefix, *loc])
        if err["type"] == "extra_forbidden":
            owner = _model_at(model, loc[:-1]) or model
            known = sorted(owner.model_fields)
            message = f"unknown key '{key}'"
            fix = f"{did_you_mean(loc[-1], known)}Use one of: {', '.join(known)}."
        elif err["type"] == "missing":
            message, fix = f"'{key}' is required", f"set {key} in the site's inventory vars."
        elif err["type"] in ("model_type", "model_attributes_type", "dict_type"):
            message = f"'{key}' must be a mapping, got {type(err['input']).__name__}"
            fix = f"write {key} as a YAML mapping of its keys."
        else:
            # pydantic's text names the rule; the value itself may be a secret, so it is not shown
            message, fix = f"'{key}': {err['msg']}", f"correct {key} in the site's inventory vars."
        raise BadInput(f"site '{site}': {message}.", key=key, fix=fix) from None


def _model_at(model: type[BaseModel], loc: list[str]) -> type[BaseModel] | None:
    """The nested model at ``loc`` below ``model`` (``['s3']`` -> S3Settings), None if there is none."""
    current: type[BaseModel] | None = model
    for name in loc:
        field = current.model_fields.get(name) if current is not None else None
        if field is None:
            return None
        current = _model_of(field.annotation)
    return current


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The model class in an annotation such as ``S3Settings | None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Union, types.UnionType):
        for arg in get_args(annotation):
            found = _model_of(arg)
            if found is not None:
                return found
    return None
