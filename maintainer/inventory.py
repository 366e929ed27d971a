"""Sites: the hosts of an Ansible inventory, read by ansible-core's own parser.

A site is one host entry (``inventory_hostname``). Its vars are resolved the
way ``ansible-playbook`` resolves them (inventory vars, ``group_vars/`` and
``host_vars/`` beside the inventory, precedence, Jinja templates, vault), so
one inventory serves both tools. The result is plain Python data: ansible-core
2.19's tagged and lazy types never leave this module.

Vault values are decrypted at load time, so a missing or wrong password is a
``BadInput`` (exit code 2) before anything runs, and every decrypted value is
known to the inventory's ``Redactor``.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maintainer.errors import BadInput
from maintainer.redact import Redactor
from maintainer.transport import connection_kind

log = logging.getLogger(__name__)

VAULT_FIX = (
    "pass --vault-password-file FILE, or set MAINTAINER_VAULT_PASSWORD_FILE=FILE "
    "(or MAINTAINER_VAULT_PASSWORD) in the environment"
)
# the magic vars worth keeping: the rest (groups, hostvars, playbook_dir, ...) is
# ansible's own bookkeeping and would only bloat `inventory list` and templates
_KEEP_MAGIC = frozenset({"inventory_hostname", "group_names"})
_VARS_DIRS = ("group_vars", "host_vars")


@dataclass
class Site:
    """One website: a host entry of the inventory and its resolved vars."""

    name: str
    vars: dict[str, Any]
    groups: list[str]

    @property
    def connection(self) -> str:
        """'local' or 'ssh'; any other Ansible connection type is returned as named."""
        return connection_kind(self.vars)

    @property
    def host(self) -> str:
        return str(self.vars.get("ansible_host") or self.vars.get("ansible_ssh_host") or self.name)

    @property
    def port(self) -> int:
        return int(self.vars.get("ansible_port") or self.vars.get("ansible_ssh_port") or 22)

    @property
    def user(self) -> str:
        return str(self.vars.get("ansible_user") or self.vars.get("ansible_ssh_user") or "")

    @property
    def cms(self) -> str:
        return str(self.vars.get("cms", "static"))

    @property
    def url(self) -> str | None:
        url = self.vars.get("site_url")
        return None if url is None else str(url)


@dataclass
class Inventory:
    """The sites of one or more inventory sources, with a digest of the files read."""

    sources: list[Path]
    sites: list[Site]
    digest: str
    redactor: Redactor

    def select(self, limit: str | None) -> list[Site]:
        """The sites matching an Ansible ``--limit`` pattern, in inventory order."""
        if limit is None or not limit.strip():
            return list(self.sites)
        from ansible.errors import AnsibleError

        with _quiet_ansible():
            # a fresh matcher per call: subset() is state, and a few ms per run is nothing
            manager = _matcher(self.sites)
            try:
                manager.subset(limit)  # exactly what ansible-playbook --limit does
                names = {host.name for host in manager.get_hosts("all")}
            except AnsibleError as exc:
                raise BadInput(
                    f"invalid --limit pattern '{limit}': {_ansible_message(exc)}",
                    key="limit",
                    fix="use Ansible host patterns: 'shop*', 'group', 'a:b', 'all:!x', 'a:&b', '~regex'",
                ) from exc
        selected = [site for site in self.sites if site.name in names]
        if not selected:
            raise BadInput(
                f"--limit pattern '{limit}' matches no site",
                key="limit",
                fix=f"use a site or group name; known sites: {_few(s.name for s in self.sites)}; "
                f"groups: {_few(sorted({g for s in self.sites for g in s.groups}))}",
            )
        return selected

    def masked_vars(self, site: Site) -> dict[str, Any]:
        """The site's vars with every secret masked: for display and the change log."""
        masked: dict[str, Any] = self.redactor(site.vars)
        return masked


def load_inventory(
    sources: Sequence[str | Path], *, vault_password_file: str | Path | None = None
) -> Inventory:
    """Parse inventory sources (YAML, INI or directories) into sites with resolved vars."""
    paths = _check_sources(sources)
    _ensure_utf8_locale()
    # imported here: ansible costs ~0.25 s to import, which `--help` should not pay
    from ansible.parsing.dataloader import DataLoader

    files = _inventory_files(paths)
    redactor = Redactor()
    loader = DataLoader()
    secrets = _vault_secrets(vault_password_file, loader, redactor)
    loader.set_vault_secrets(secrets or None)
    with _quiet_ansible() as captured:
        manager = _parse(paths, loader, captured, bool(secrets))
        sites = _resolve_sites(manager, loader, secrets, files, redactor)
        warnings = captured.kept + captured.take()
    for warning in warnings:
        # real problems (e.g. a reserved var name), but ansible's, not ours: log, don't print
        log.warning("ansible: %s", redactor.text(warning))
    return Inventory(sources=paths, sites=sites, digest=_digest(files), redactor=redactor)


def _parse(paths: list[Path], loader: Any, captured: _Captured, has_secrets: bool) -> Any:
    """An InventoryManager over the sources; every source must parse and some host exist."""
    from ansible.errors import AnsibleError
    from ansible.inventory.manager import InventoryManager

    _forget_vars_file_cache()
    try:
        manager = InventoryManager(loader=loader, sources=[str(p) for p in paths])
    except AnsibleError as exc:
        file, line = _origin(exc)
        raise BadInput(
            f"could not read the inventory: {_ansible_message(exc)}", file=file or paths[0], line=line
        ) from exc
    _check_parsed(paths, manager, captured, has_secrets)
    if not manager.get_hosts("all"):
        raise BadInput(
            "the inventory has no hosts",
            file=", ".join(str(p) for p in paths),
            fix="add at least one host (one site) to it",
        )
    return manager


def _resolve_sites(
    manager: Any, loader: Any, secrets: list[Any], files: list[tuple[str, Path]], redactor: Redactor
) -> list[Site]:
    """Every host's vars, as ansible-playbook would see them, decrypted and rendered."""
    from ansible import constants as C
    from ansible.errors import AnsibleError
    from ansible.vars.manager import VariableManager

    variables = VariableManager(loader=loader, inventory=manager)
    magic = (set(variables.get_vars(include_hostvars=False)) | set(C.INTERNAL_STATIC_VARS)) - _KEEP_MAGIC
    vaulted_files = [path for _, path in files if _in_vars_dir(path) and _is_vault_file(path)]

    resolved = []
    for host in manager.get_hosts("all"):
        try:
            resolved.append((host.name, variables.get_vars(host=host, include_hostvars=False)))
        except AnsibleError as exc:
            raise _vars_error(host, exc, loader, vaulted_files, bool(secrets)) from exc

    # values of whole-file vaults are secrets, whatever their key is called
    vault_file_keys = _collect_vault_files(loader, vaulted_files, redactor)
    sites = []
    for name, all_vars in resolved:
        site_vars = _render_site(name, all_vars, magic, loader, secrets, redactor)
        for key in vault_file_keys & site_vars.keys():
            redactor.add(_leaves(site_vars[key]))
            redactor.add_keys(_leaf_paths(site_vars[key], (key,)))
        redactor.collect(site_vars)
        site = Site(name=name, vars=site_vars, groups=list(site_vars.get("group_names", [])))
        _check_site(site)
        sites.append(site)
    return sites


def _matcher(sites: list[Site]) -> Any:
    """An in-memory InventoryManager of the sites, for ansible's own pattern matching."""
    _ensure_utf8_locale()
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader

    manager = InventoryManager(loader=DataLoader(), sources=None)
    # Site.groups holds every group of a site, ancestors included, so flat
    # membership matches the same hosts as the original tree (and an Inventory
    # built by hand, without files, can be matched too)
    for site in sites:
        for group in site.groups or ["ungrouped"]:
            manager.add_group(group)
            manager.add_host(site.name, group=group)
    manager.reconcile_inventory()  # links the groups under 'all'
    return manager


# --- sources and digest ---------------------------------------------------


def _check_sources(sources: Sequence[str | Path]) -> list[Path]:
    if not sources:
        raise BadInput("no inventory given", fix="pass -i FILE (an Ansible inventory, YAML or INI)")
    paths = []
    for source in sources:
        path = Path(source).expanduser()
        if not path.exists():
            raise BadInput(
                "inventory file not found",
                file=path,
                fix="check the path given with -i (or the default inventory in maintainer.toml)",
            )
        paths.append(path.resolve())
    return paths


def _inventory_files(paths: list[Path]) -> list[tuple[str, Path]]:
    """Every file that makes up the inventory, as (path relative to the sources' common base, path)."""
    found: dict[Path, None] = {}  # ordered set
    for source in paths:
        base = source if source.is_dir() else source.parent
        if source.is_dir():
            for path in _walk(source, ansible_ignored=True):
                found[path] = None
        else:
            found[source] = None
        for name in _VARS_DIRS:
            for path in _walk(base / name, ansible_ignored=False):
                found[path] = None
    bases = [p if p.is_dir() else p.parent for p in paths]
    common = Path(os.path.commonpath([str(b) for b in bases]))
    return sorted((path.relative_to(common).as_posix(), path) for path in found)


def _walk(top: Path, *, ansible_ignored: bool) -> Iterator[Path]:
    """Files below ``top`` that ansible would read, hidden files and backups skipped."""
    from ansible import constants as C

    if not top.is_dir():
        return
    # what ansible skips in an inventory directory (README.md, *.retry, ...): configurable
    ignored_exts = tuple(C.INVENTORY_IGNORE_EXTS)
    for dirpath, dirnames, filenames in os.walk(top):
        # vars dirs are walked from the source's base only: ansible ignores nested ones
        dirnames[:] = sorted(
            d for d in dirnames if not d.startswith(".") and not (ansible_ignored and d in _VARS_DIRS)
        )
        for name in sorted(filenames):
            if name.startswith(".") or name.endswith("~"):
                continue
            if ansible_ignored and name.endswith(ignored_exts):
                continue
            yield Path(dirpath, name)


def _digest(files: list[tuple[str, Path]]) -> str:
    digest = hashlib.sha256()
    for rel, path in files:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise BadInput(f"cannot read inventory file: {exc.strerror}", file=path) from exc
        # name and length delimit each file, so moving bytes between files changes the digest
        digest.update(f"{rel}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


def _in_vars_dir(path: Path) -> bool:
    return any(part in _VARS_DIRS for part in path.parts)


def _vars_file_entity(path: Path) -> str:
    """The group or host a vars file belongs to: group_vars/NAME.yml or group_vars/NAME/..."""
    parts = path.parts
    index = max(i for i, part in enumerate(parts) if part in _VARS_DIRS)
    below = parts[index + 1 :]
    if len(below) > 1:
        return below[0]
    name = below[0]
    stem, ext = os.path.splitext(name)
    return stem if ext in (".yml", ".yaml", ".json") else name


def _is_vault_file(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(len(b"$ANSIBLE_VAULT")) == b"$ANSIBLE_VAULT"


def _forget_vars_file_cache() -> None:
    # host_group_vars caches which group_vars/host_vars files exist per process;
    # a long-lived process (tests, a daemon) must see files added since
    try:
        from ansible.plugins.vars import host_group_vars
    except ImportError:  # pragma: no cover - other ansible-core layouts
        return
    for name in ("FOUND", "NAK", "CANONICAL_PATHS"):
        cache = getattr(host_group_vars, name, None)
        if cache is not None:
            cache.clear()


# --- ansible's warnings and errors ----------------------------------------


def _ensure_utf8_locale() -> None:
    # ansible's CLIs refuse a non-UTF-8 locale (LANG unset, C, or LC_ALL=C); the
    # ansible-playbook/ansible-runner processes we start inherit this environment
    for name in ("LANG", "LC_ALL"):
        value = os.environ.get(name)
        if (name == "LANG" and not value) or value in ("C", "POSIX"):
            os.environ[name] = "C.UTF-8"


class _Captured:
    """Ansible's display warnings, captured instead of printed to stderr."""

    def __init__(self, context: Any = None) -> None:
        self._context = context
        self._taken = 0
        self.kept: list[str] = []  # warnings worth passing on (to the log)

    def take(self) -> list[str]:
        """The warnings captured since the last call, as text."""
        if self._context is None:
            return []
        from ansible._internal._display_utils import format_message

        captured = self._context.get_warnings()[self._taken :]
        self._taken += len(captured)
        return [format_message(w, False).strip() for w in captured]


@contextmanager
def _quiet_ansible() -> Iterator[_Captured]:
    # ansible only *warns* when an inventory source fails to parse: capturing the
    # warnings lets us turn those into errors and keep the noise off stderr
    try:  # ansible-core >= 2.19
        from ansible._internal._display_utils import DeferredWarningContext
    except ImportError:  # pragma: no cover - older ansible-core prints its warnings
        yield _Captured()
        return
    with DeferredWarningContext(variables={}) as context:
        yield _Captured(context)


def _check_parsed(paths: list[Path], manager: Any, captured: _Captured, has_secrets: bool) -> None:
    """Fail on any inventory source that ansible could not parse (ansible only warns)."""
    failures: dict[str, list[str]] = {}
    pending: list[str] = []
    rest: list[str] = []
    for text in captured.take():
        if text.startswith("Failed to parse inventory with"):
            pending.append(text)
        elif match := re.match(r"Unable to parse (.+) as an inventory source", text):
            failures[match.group(1)] = pending
            pending = []
        else:
            rest.append(text)
    # a file source ansible did not list as parsed failed even if it said nothing
    processed = {os.path.realpath(p) for p in getattr(manager._inventory, "processed_sources", []) if p}
    for path in paths:
        if path.is_file() and os.path.realpath(path) not in processed:
            failures.setdefault(str(path), pending)
    for source, details in failures.items():
        raise _parse_error(Path(source), details, has_secrets)
    captured.kept += rest + pending


def _parse_error(path: Path, details: list[str], has_secrets: bool) -> BadInput:
    fix = f"fix the file; `ansible-inventory -i {path} --list` shows the same error"

    def line_of(text: str) -> int | None:
        match = re.search(rf"Origin: {re.escape(str(path))}:(\d+)", text)
        return int(match.group(1)) if match else None

    if any("vault" in text.lower() for text in details):
        return _vault_error("the inventory file", has_secrets, file=path)
    if not details:
        return BadInput(
            "not a valid Ansible inventory (no inventory plugin could parse it)", file=path, fix=fix
        )
    # prefer the failure that points at a line, then the plugin meant for this file type
    yaml_file = path.suffix in (".yml", ".yaml", ".json")

    def rank(text: str) -> tuple[bool, bool]:
        ini = "with 'ini' plugin" in text
        return (line_of(text) is None, ini if yaml_file else not ini)

    best = min(details, key=rank)
    first = best.splitlines()[0]
    match = re.match(r"Failed to parse inventory with '([^']+)' plugin: (.*)", first)
    message = f"{match.group(2)} (ansible's '{match.group(1)}' inventory plugin)" if match else first
    return BadInput(f"not a valid Ansible inventory: {message}", file=path, line=line_of(best), fix=fix)


def _ansible_message(exc: BaseException) -> str:
    message = getattr(exc, "message", None) or str(exc)
    return " ".join(str(message).split())


def _origin(exc: BaseException) -> tuple[str | None, int | None]:
    """The file and line an ansible error points at, following its causes."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        origin = _origin_of(getattr(current, "obj", None))
        if origin[0]:
            return origin
        current = current.__cause__ or current.__context__
    return None, None


def _origin_of(value: Any) -> tuple[str | None, int | None]:
    if value is None:
        return None, None
    try:  # ansible-core >= 2.19 tags values with where they were read
        from ansible._internal._datatag._tags import Origin
    except ImportError:  # pragma: no cover
        return None, None
    origin = value if isinstance(value, Origin) else Origin.get_tag(value)
    if origin is None or not origin.path:
        return None, None
    return origin.path, origin.line_num


# --- vault ----------------------------------------------------------------


@dataclass(frozen=True)
class VaultSource:
    """Where the vault password comes from: a file (or script) path, or the password itself."""

    origin: str  # the option, env var or setting it came from, for messages
    file: Path | None = None
    password: str | None = None


def vault_source(password_file: str | Path | None) -> VaultSource | None:
    """The first of: argument, env password files, env password, ansible.cfg (one order for all)."""
    from ansible import constants as C

    for candidate, origin in (
        (password_file, "--vault-password-file"),
        (os.environ.get("MAINTAINER_VAULT_PASSWORD_FILE"), "MAINTAINER_VAULT_PASSWORD_FILE"),
        (os.environ.get("ANSIBLE_VAULT_PASSWORD_FILE"), "ANSIBLE_VAULT_PASSWORD_FILE"),
    ):
        if candidate:
            return VaultSource(origin, file=Path(str(candidate)).expanduser())
    password = os.environ.get("MAINTAINER_VAULT_PASSWORD")
    if password:
        return VaultSource("MAINTAINER_VAULT_PASSWORD", password=password)
    # vault_password_file in ansible.cfg: ansible-playbook would use it too
    if C.DEFAULT_VAULT_PASSWORD_FILE:
        return VaultSource("ansible.cfg", file=Path(C.DEFAULT_VAULT_PASSWORD_FILE).expanduser())
    return None


def _vault_secrets(
    password_file: str | Path | None, loader: Any, redactor: Redactor
) -> list[tuple[str, Any]]:
    from ansible.parsing.vault import VaultSecret

    source = vault_source(password_file)
    if source is None:
        return []
    if source.file is not None:
        return _vault_secret_file(source.file, source.origin, loader, redactor)
    assert source.password is not None
    redactor.add([source.password])
    return [("default", VaultSecret(source.password.encode()))]


def _vault_secret_file(path: Path, origin: str, loader: Any, redactor: Redactor) -> list[tuple[str, Any]]:
    from ansible.errors import AnsibleError
    from ansible.parsing.vault import get_file_vault_secret

    path = path.expanduser()
    if not path.is_file():
        raise BadInput(f"vault password file not found (from {origin})", file=path, fix=VAULT_FIX)
    try:
        # ansible's own reader: a plain file, or an executable script that prints the password
        secret = get_file_vault_secret(filename=str(path), vault_id="default", loader=loader)
        secret.load()
    except AnsibleError as exc:
        raise BadInput(
            f"could not read the vault password: {_ansible_message(exc)}", file=path, fix=VAULT_FIX
        ) from exc
    redactor.add([secret.bytes.decode("utf-8", "replace")])
    return [("default", secret)]


def _vault_error(
    what: str, has_secrets: bool, *, file: str | Path | None, line: int | None = None, key: str | None = None
) -> BadInput:
    if has_secrets:
        return BadInput(
            f"{what} could not be decrypted with the vault password given (wrong password?)",
            file=file,
            line=line,
            key=key,
            fix=f"check the password; {VAULT_FIX}",
        )
    return BadInput(
        f"{what} is vault-encrypted and no vault password was given",
        file=file,
        line=line,
        key=key,
        fix=VAULT_FIX,
    )


def _is_vault_failure(exc: BaseException) -> bool:
    from ansible.parsing.vault import AnsibleVaultError

    text = _ansible_message(exc).lower()
    return isinstance(exc, AnsibleVaultError) or "vault" in text or "decrypt" in text


def _vars_error(
    host: Any, exc: BaseException, loader: Any, vaulted_files: list[Path], has_secrets: bool
) -> BadInput:
    """Name the file behind a failure to read a host's vars (ansible's message often does not)."""
    if _is_vault_failure(exc):
        from ansible.errors import AnsibleError

        # the vault files this host reads: group_vars/<group>[.yml|/...], host_vars/<host>...
        entities = {host.name, *(group.name for group in host.get_groups())}
        for path in vaulted_files:
            if _vars_file_entity(path) not in entities:
                continue
            try:
                loader.load_from_file(str(path), cache="all", unsafe=True, trusted_as_template=True)
            except AnsibleError:
                return _vault_error("this vars file", has_secrets, file=path)
        return _vault_error(f"a vars file of site '{host.name}'", has_secrets, file=None)
    file, line = _origin(exc)
    return BadInput(
        f"could not read the vars of site '{host.name}': {_ansible_message(exc)}",
        file=file,
        line=line,
        fix="fix that file; `ansible-inventory --host` shows the same error",
    )


def _collect_vault_files(loader: Any, vaulted_files: list[Path], redactor: Redactor) -> set[str]:
    """Register the values of whole-file vaults as secrets; return their top-level keys."""
    from ansible.errors import AnsibleError

    keys: set[str] = set()
    for path in vaulted_files:
        try:
            # same arguments as the host_group_vars plugin: served from the loader's cache
            data = loader.load_from_file(str(path), cache="all", unsafe=True, trusted_as_template=True)
        except AnsibleError:
            continue  # a vault file no host uses: ansible never reads it either
        if isinstance(data, Mapping):
            keys.update(str(k) for k in data)
            redactor.add(_leaves(_plain(data)))
    return keys


def _leaves(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    elif value is not None and not isinstance(value, bool):
        yield str(value)


def _leaf_paths(value: Any, path: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
    """The key path of every leaf below ``value`` (list indexes included, as ints)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaf_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaf_paths(item, (*path, index))
    else:
        yield path


# --- resolving one site's vars ---------------------------------------------


def _render_site(
    name: str, all_vars: dict[str, Any], magic: set[str], loader: Any, secrets: list[Any], redactor: Redactor
) -> dict[str, Any]:
    """The host's own vars, vault values decrypted and templates rendered, as plain data."""
    from ansible.errors import AnsibleError
    from ansible.template import Templar

    # magic vars (groups lists every host) hold no vault values: walking them for every
    # host made loading quadratic in the number of hosts
    decrypted = {
        k: v if k in magic else _decrypt(v, (k,), name, secrets, redactor) for k, v in all_vars.items()
    }
    # magic vars stay in the template context: a var may use `groups` or `inventory_dir`
    templar = Templar(loader=loader, variables=decrypted)
    site_vars: dict[str, Any] = {}
    for key, value in decrypted.items():
        if key in magic:
            continue
        try:
            rendered = templar.template(value)
        except AnsibleError as exc:
            file, line = _origin(exc)
            if file is None:
                file, line = _origin_of(value)
            raise BadInput(
                f"site '{name}': cannot render var '{key}': {_ansible_message(exc)}",
                file=file,
                line=line,
                key=key,
                fix="define the variables it uses, or quote a literal '{{' with !unsafe",
            ) from exc
        site_vars[str(key)] = _plain(rendered)
    return site_vars


def _decrypt(value: Any, path: tuple[Any, ...], site: str, secrets: list[Any], redactor: Redactor) -> Any:
    """Decrypt inline ``!vault`` values now, so a bad password fails the load, not a step."""
    from ansible.errors import AnsibleError
    from ansible.parsing.vault import EncryptedString, VaultHelper, VaultLib

    if isinstance(value, EncryptedString):
        key = ".".join(str(p) for p in path)
        file, line = _origin_of(value)
        if not secrets:
            raise _vault_error(f"var '{key}' of site '{site}'", False, file=file, line=line, key=key)
        try:
            # our own VaultLib: ansible's EncryptedString would use a process-wide secret
            # that can only be set once, and load_inventory may run with several passwords
            ciphertext = VaultHelper.get_ciphertext(value, with_tags=True)
            plaintext = VaultLib(secrets).decrypt(ciphertext).decode("utf-8")
        except AnsibleError as exc:
            raise _vault_error(f"var '{key}' of site '{site}'", True, file=file, line=line, key=key) from exc
        redactor.add([plaintext])
        redactor.add_keys([path])  # masked by key too, however short the value
        return plaintext  # untrusted plain str: ansible does not template vault values either
    if isinstance(value, Mapping):
        return {k: _decrypt(v, (*path, k), site, secrets, redactor) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_decrypt(v, (*path, i), site, secrets, redactor) for i, v in enumerate(value)]
    return value


def _plain(value: Any) -> Any:
    """Plain Python data: ansible-core 2.19 hands out tagged str/int/dict subclasses."""
    if value is None:
        return None
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        return str.__str__(value)  # str.__str__ of a subclass returns an exact str
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()  # unquoted YAML dates: json.dumps cannot take them
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _check_site(site: Site) -> None:
    try:
        site.port  # noqa: B018 - validates ansible_port now rather than mid-run
    except (TypeError, ValueError) as exc:
        raise BadInput(
            f"site '{site.name}': ansible_port is not a number: {site.vars.get('ansible_port')!r}",
            key="ansible_port",
            fix="set ansible_port to a port number",
        ) from exc


def _few(names: Iterator[str] | list[str], limit: int = 8) -> str:
    items = list(names)
    text = ", ".join(items[:limit])
    return f"{text}, ... ({len(items)} in all)" if len(items) > limit else text or "(none)"
