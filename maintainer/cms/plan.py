"""The update plan: which available updates a run applies, to exactly which version, in which order.

Pure logic over what the adapter reported (``Update``s, the installed ``Component``s) and what the
runbook asked for (a ``Selection``). The result names exact versions, so the real run applies what
the dry run showed and not "whatever is newest a minute later"; every update that is not planned is
``held`` with the reason, for the operator and the change log.

Order (the order ``apply`` receives): core first (plugins may need the new core), then components
that others depend on (``Update.depends_on``) before their add-ons (Elementor before Elementor
Pro), then themes.

Security fixes (``Fix``) come from the vulnerability feed (``vulnfeed.update_plan``: the first
version that fixes all of a component's advisories) or from the CMS's own advisories
(``adapter.security_updates()``); a selection of ``security`` takes the component to exactly that
version.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .base import MAJOR, Component, PlannedUpdate, Update, component_key
from .versions import compare

CORE_CHOICES = ("none", "minor", "major", "security")
PLUGIN_CHOICES = ("all", "security", "list", "none")
THEME_CHOICES = ("all", "security", "none")
#: component types that are "plugins" for the selection (Drupal modules, Joomla extensions)
PLUGIN_TYPES = ("plugin", "module", "extension")


@dataclass(frozen=True)
class Fix:
    """A security fix for one component: update to exactly ``to`` (None: no fixed version yet)."""

    to: str | None
    reason: str = "security"


@dataclass(frozen=True)
class Selection:
    """What the runbook's params select (validated by ``parse_pins`` / the action's Args)."""

    core: str = "minor"
    plugins: str = "all"
    themes: str = "all"
    #: plugins=list: these slugs (or ``plugin:slug`` keys)
    only: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    #: slug (or key, or ``core``) -> the version the component is held at or taken to
    pin: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Held:
    """An update the plan leaves out, and why."""

    type: str
    slug: str
    name: str
    from_version: str | None
    #: the version that was offered (or the security fix's version)
    to_version: str | None
    reason: str

    @property
    def key(self) -> str:
        return component_key(self.type, self.slug)

    def record(self) -> dict[str, Any]:
        return {
            "component": self.key,
            "type": self.type,
            "slug": self.slug,
            "name": self.name,
            "from": self.from_version,
            "to": self.to_version,
            "reason": self.reason,
        }

    def line(self) -> str:
        versions = f"{self.from_version or '?'} -> {self.to_version or '?'}"
        return f"{_label(self.type, self.slug)} {versions} ({self.reason})"


@dataclass
class UpdatePlan:
    items: list[PlannedUpdate]
    held: list[Held]
    #: notes on the selection itself (an excluded slug that is not installed, ...)
    notes: list[str] = field(default_factory=list)
    #: names in only/exclude/pin that match nothing installed: {"only": ["typo"], ...}
    unknown: dict[str, list[str]] = field(default_factory=dict)

    def summary(self, limit: int = 8) -> str:
        if self.items:
            shown = ", ".join(item_line(i) for i in self.items[:limit])
            more = f" and {len(self.items) - limit} more" if len(self.items) > limit else ""
            text = f"{_count(len(self.items), 'update')}: {shown}{more}"
        else:
            text = "no updates to apply"
        if self.held:
            shown = "; ".join(h.line() for h in self.held[:limit])
            more = f" and {len(self.held) - limit} more" if len(self.held) > limit else ""
            text += f"; {len(self.held)} held: {shown}{more}"
        return text


def _count(number: int, word: str) -> str:
    return f"{number} {word}" if number == 1 else f"{number} {word}s"


def _label(type: str, slug: str) -> str:
    return "core" if type == "core" else f"{type} {slug}"


def item_line(item: PlannedUpdate) -> str:
    return f"{_label(item.type, item.slug)} {item.from_version or '?'} -> {item.to_version}"


def key_of(type: str, slug: str) -> str:
    return "core" if type == "core" else f"{type}:{slug}"


def parse_pins(values: Iterable[str]) -> dict[str, str]:
    """``["akismet=5.0.2", "core=6.4.3"]`` -> ``{"akismet": "5.0.2", "core": "6.4.3"}``.

    ValueError names the one that is not ``slug=version``.
    """
    pins: dict[str, str] = {}
    for value in values:
        slug, sep, version = str(value).partition("=")
        if not sep or not slug.strip() or not version.strip():
            raise ValueError(f"'{value}' is not slug=version (e.g. akismet=5.0.2 or core=6.4.3)")
        pins[slug.strip()] = version.strip()
    return pins


def fixes_from_feed(records: Iterable[Mapping[str, Any]]) -> dict[str, Fix]:
    """``vulnfeed.update_plan`` records (cms.vulnerabilities' ``updates`` output) as fixes by key."""
    fixes: dict[str, Fix] = {}
    for record in records:
        key = str(record.get("component") or key_of(str(record["type"]), str(record["slug"])))
        advisories = ", ".join(record.get("advisories") or []) or "vulnerability feed"
        to = record.get("to")
        fixes[key] = Fix(None if to in (None, "") else str(to), f"security: {advisories}")
    return fixes


def fixes_from_updates(updates: Iterable[Update]) -> dict[str, Fix]:
    """The CMS's own security advisories (``adapter.security_updates()``) as fixes by key."""
    return {u.key: Fix(u.available, "security: the CMS's own advisory") for u in updates}


def _matches(names: Iterable[str], type: str, slug: str) -> bool:
    key = key_of(type, slug)
    return any(name in (slug, key) for name in names)


def _pin_for(pins: Mapping[str, str], type: str, slug: str) -> str | None:
    key = key_of(type, slug)
    return pins.get(key) or pins.get(slug)


def build_plan(
    updates: Sequence[Update],
    components: Sequence[Component],
    selection: Selection,
    *,
    fixes: Mapping[str, Fix] | None = None,
    php_version: str | None = None,
    core_version: str | None = None,
    cms_title: str = "core",
) -> UpdatePlan:
    """The plan for one site (see the module docstring)."""
    fixes = fixes or {}
    installed = {c.key: c for c in components}
    if core_version is None and "core" in installed:
        core_version = installed["core"].version
    plan = UpdatePlan([], [])
    by_key: dict[str, list[Update]] = {}
    for update in updates:
        by_key.setdefault(update.key, []).append(update)

    # ---- core first: its planned version is what the components' requirements are checked against
    candidates: list[tuple[PlannedUpdate, Update | None]] = []
    core_updates = by_key.pop("core", [])
    core_item = _plan_core(
        core_updates, installed.get("core"), selection, fixes, php_version, plan, cms_title
    )
    target_core = core_version
    if core_item is not None:
        candidates.append(core_item)
        target_core = f"{core_item[0].to_version}*"  # '*': after the planned core update

    # ---- the components: offered updates, and security fixes the update source may not offer
    keys = list(by_key)
    keys += [k for k in fixes if k != "core" and k not in by_key]
    for key in keys:
        offered = by_key.get(key, [])
        component = installed.get(key)
        type, _, slug = key.partition(":")
        if not offered and component is None:
            plan.notes.append(f"{key} has a security fix but is not installed: nothing to update")
            continue
        item = _plan_component(
            type,
            slug,
            offered,
            component,
            selection,
            fixes.get(key),
            php_version,
            target_core,
            plan,
            cms_title,
        )
        if item is not None:
            candidates.append(item)

    # ---- a component whose dependency is held is held too (its new version may need the new one)
    held_keys = {h.key for h in plan.held if not h.reason.startswith("not selected")}
    changed = True
    while changed:
        changed = False
        for planned, source in list(candidates):
            if source is None:
                continue
            blocked = [d for d in source.depends_on if _dep_key(d, planned.type) in held_keys]
            if blocked:
                candidates.remove((planned, source))
                reason = f"a dependency is held: {', '.join(blocked)}"
                plan.held.append(Held(planned.type, planned.slug, planned.name, planned.from_version,
                                      planned.to_version, reason))  # fmt: skip
                held_keys.add(planned.key)
                changed = True

    plan.items = _ordered(candidates)
    _note_unknown(selection, installed, by_key, plan)
    return plan


def _dep_key(dependency: str, type: str) -> str:
    if ":" in dependency or dependency == "core":
        return dependency
    return key_of(type if type in PLUGIN_TYPES else "plugin", dependency)


def _plan_core(
    offered: list[Update],
    component: Component | None,
    selection: Selection,
    fixes: Mapping[str, Fix],
    php_version: str | None,
    plan: UpdatePlan,
    cms_title: str,
) -> tuple[PlannedUpdate, Update | None] | None:
    fix = fixes.get("core")
    if not offered and fix is None:
        return None
    first = offered[0] if offered else None
    name = first.name if first else (component.name if component else cms_title)
    slug = first.slug if first else (component.slug if component else "core")
    current = first.current if first else (component.version if component else None)
    newest = _newest(offered)
    offered_to = newest.available if newest else (fix.to if fix else None)

    def hold(to: str | None, reason: str) -> None:
        plan.held.append(Held("core", slug, name, current, to, reason))

    if _matches(selection.exclude, "core", slug):
        hold(offered_to, "excluded")
        return None
    pin = _pin_for(selection.pin, "core", slug)
    if pin is not None:
        return _pinned("core", slug, name, current, pin, offered, plan)
    if selection.core == "none":
        hold(offered_to, "not selected (core: none)")
        return None
    if selection.core == "security":
        if fix is None:
            hold(offered_to, "not selected (core: security; no security fix for the installed version)")
            return None
        return _fixed("core", slug, name, current, fix, offered, php_version, None, plan, cms_title)
    allowed = [u for u in offered if selection.core == "major" or u.kind != MAJOR]
    choice = _newest(allowed)
    if choice is None:
        assert newest is not None
        hold(newest.available, f"major core update not allowed (core: {selection.core}; use core=major)")
        return None
    reason = _requirement_problem(choice, php_version, None, cms_title)
    if reason:
        hold(choice.available, reason)
        return None
    return PlannedUpdate("core", choice.slug, choice.name, choice.current, choice.available,
                         _reason(choice, fix), choice.package), choice  # fmt: skip


def _plan_component(
    type: str,
    slug: str,
    offered: list[Update],
    component: Component | None,
    selection: Selection,
    fix: Fix | None,
    php_version: str | None,
    target_core: str | None,
    plan: UpdatePlan,
    cms_title: str,
) -> tuple[PlannedUpdate, Update | None] | None:
    newest = _newest(offered)
    name = newest.name if newest else (component.name if component else slug)
    current = newest.current if newest else (component.version if component else None)
    offered_to = newest.available if newest else (fix.to if fix else None)

    def hold(reason: str) -> None:
        plan.held.append(Held(type, slug, name, current, offered_to, reason))

    if _matches(selection.exclude, type, slug):
        hold("excluded")
        return None
    pin = _pin_for(selection.pin, type, slug)
    if pin is not None:
        return _pinned(type, slug, name, current, pin, offered, plan)
    mode = selection.themes if type == "theme" else selection.plugins
    group = "themes" if type == "theme" else "plugins"
    if mode == "none":
        hold(f"not selected ({group}: none)")
        return None
    if mode == "list" and not _matches(selection.only, type, slug):
        hold("not selected (not in only)")
        return None
    if mode == "security":
        if fix is None:
            hold("not selected (no known vulnerability)")
            return None
        return _fixed(type, slug, name, current, fix, offered, php_version, target_core, plan, cms_title)
    if newest is None:
        # only a security fix is known for it, and the selection is not security: still worth saying
        hold(f"not selected ({group}: {mode}); the update source offers no update")
        return None
    reason = _requirement_problem(newest, php_version, target_core, cms_title)
    if reason:
        hold(reason)
        return None
    return PlannedUpdate(
        type, slug, name, current, newest.available, _reason(newest, fix), newest.package
    ), newest


def _fixed(
    type: str,
    slug: str,
    name: str,
    current: str | None,
    fix: Fix,
    offered: list[Update],
    php_version: str | None,
    target_core: str | None,
    plan: UpdatePlan,
    cms_title: str,
) -> tuple[PlannedUpdate, Update | None] | None:
    """Exactly the first fixed version (not the newest one)."""
    if fix.to is None:
        plan.held.append(Held(type, slug, name, current, None, f"no fix known ({fix.reason})"))
        return None
    if current is not None and compare(fix.to, current) <= 0:
        plan.notes.append(f"{key_of(type, slug)} {current} already has the fix ({fix.to})")
        return None
    # the requirements are known only for the offered version
    same = next((u for u in offered if u.available == fix.to), None)
    if same is not None:
        reason = _requirement_problem(same, php_version, target_core, cms_title)
        if reason:
            plan.held.append(Held(type, slug, name, current, fix.to, reason))
            return None
    package = offered[0].package if offered else None
    return PlannedUpdate(type, slug, name, current, fix.to, fix.reason, package), same or (
        offered[0] if offered else None
    )


def _pinned(
    type: str,
    slug: str,
    name: str,
    current: str | None,
    pin: str,
    offered: list[Update],
    plan: UpdatePlan,
) -> tuple[PlannedUpdate, Update | None] | None:
    """A pin holds the component at that version, or takes it there when it is newer than installed."""
    newest = _newest(offered)
    offered_to = newest.available if newest else None
    if current is None or compare(pin, current) == 0:
        plan.held.append(Held(type, slug, name, current, offered_to, f"pinned at {pin}"))
        return None
    if compare(pin, current) < 0:
        reason = f"pinned at {pin}, older than the installed {current} (maintainer does not downgrade)"
        plan.held.append(Held(type, slug, name, current, offered_to, reason))
        return None
    package = offered[0].package if offered else None
    return PlannedUpdate(type, slug, name, current, pin, f"pinned at {pin}", package), (
        offered[0] if offered else None
    )


def _requirement_problem(
    update: Update, php_version: str | None, target_core: str | None, cms_title: str
) -> str | None:
    planned_core = bool(target_core and target_core.endswith("*"))
    core = target_core.rstrip("*") if target_core else None
    if update.requires_core and core and compare(core, update.requires_core) < 0:
        after = " after the planned core update" if planned_core else ""
        return f"needs {cms_title} {update.requires_core} (the site has {core}{after})"
    if update.requires_php and php_version and compare(php_version, update.requires_php) < 0:
        return f"needs PHP {update.requires_php} (the site has {php_version})"
    return None


def _reason(update: Update, fix: Fix | None) -> str:
    if fix is not None and fix.to == update.available:
        return fix.reason
    return "security" if update.security else "available"


def _newest(updates: Sequence[Update]) -> Update | None:
    best: Update | None = None
    for update in updates:
        if best is None or compare(update.available, best.available) > 0:
            best = update
    return best


def _ordered(candidates: list[tuple[PlannedUpdate, Update | None]]) -> list[PlannedUpdate]:
    """Core, then components (dependencies before their add-ons), then themes; stable otherwise."""
    core = [p for p, _ in candidates if p.type == "core"]
    themes = [(p, u) for p, u in candidates if p.type == "theme"]
    others = [(p, u) for p, u in candidates if p.type not in ("core", "theme")]
    return core + _dependencies_first(others) + _dependencies_first(themes)


def _dependencies_first(group: list[tuple[PlannedUpdate, Update | None]]) -> list[PlannedUpdate]:
    keys = {p.key for p, _ in group}
    needs = {
        p.key: {_dep_key(d, p.type) for d in (u.depends_on if u else ())} & keys - {p.key} for p, u in group
    }
    done: list[PlannedUpdate] = []
    placed: set[str] = set()
    remaining = [p for p, _ in group]
    while remaining:
        ready = [p for p in remaining if needs[p.key] <= placed]
        if not ready:  # a cycle: keep the given order for the rest
            ready = remaining[:1]
        for item in ready:
            done.append(item)
            placed.add(item.key)
            remaining.remove(item)
    return done


def _note_unknown(
    selection: Selection,
    installed: Mapping[str, Component],
    offered: Mapping[str, list[Update]],
    plan: UpdatePlan,
) -> None:
    """Names in only/exclude/pin that match nothing installed: likely typos, said in the plan."""
    known = set(installed) | set(offered) | {"core"}
    slugs = {k.partition(":")[2] for k in known if ":" in k} | {c.slug for c in installed.values()}
    for what, names in (("only", selection.only), ("exclude", selection.exclude), ("pin", selection.pin)):
        for name in names:
            if name not in known and name not in slugs:
                plan.notes.append(f"{what} names '{name}', which is not installed on this site")
                plan.unknown.setdefault(what, []).append(name)
