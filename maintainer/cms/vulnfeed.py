"""Vulnerability feed files: load, index, match installed components (docs/VULN-FEED.md).

A feed is a JSON file on the controller. Four shapes are read, recognised by their structure:

- maintainer's own (``{"format": "maintainer-vulnfeed", "version": 1, "advisories": [...]}``),
  the documented format a team writes or converts to;
- the Wordfence Intelligence vulnerability data feed (v2 production/scanner feeds, an object of
  records keyed by UUID, each with ``software[].affected_versions``);
- a WPScan API export (``{"plugins": {SLUG: {"vulnerabilities": [...]}}, "themes": ...,
  "wordpresses": {VERSION: ...}}``, or one bare ``{SLUG: {...}}`` object of plugins);
- a Patchstack threat-intelligence export (``{"vulnerabilities": [{"product_slug",
  "product_type", "affected_in", "fixed_in", ...}]}``).

Each becomes ``Advisory`` objects: one component (cms, type, slug), the version ranges it affects,
the first fixed version(s), a severity. ``Feed.match(cms, components)`` returns a ``Finding`` per
(installed component, advisory affecting its version), and ``update_plan`` turns findings into what
the cms-update flow needs: each vulnerable component and the first version that fixes all of its
advisories.

``python -m maintainer.cms.vulnfeed convert IN.json OUT.json`` writes any of these as maintainer's
format (a 150 MB Wordfence feed becomes a file a tenth the size, loaded in a fraction of the time).
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ExitCode, MaintainerError
from .base import Component
from .versions import VersionRange, compare, newest, parse_range

FORMAT = "maintainer-vulnfeed"
FORMAT_VERSION = 1
TYPES = ("core", "plugin", "theme", "module", "extension")
#: most severe first
SEVERITIES = ("critical", "high", "medium", "low", "info", "unknown")
#: the core component's slug per CMS (an advisory of type core may leave its slug out)
CORE_SLUGS = {"wordpress": "wordpress", "drupal": "drupal", "joomla": "joomla"}
_SEVERITY_WORDS = {"moderate": "medium", "important": "high", "informational": "info", "none": "info"}
_NATIVE_KEYS = {
    "id", "cms", "type", "slug", "affected", "fixed_in", "severity", "cvss", "title", "references", "cve",
    "description", "published", "updated", "source", "name",
}  # fmt: skip


class FeedError(MaintainerError):
    """A feed file that cannot be read or understood."""

    exit_code = ExitCode.BAD_INPUT


@dataclass(frozen=True)
class Advisory:
    """One vulnerability of one component."""

    id: str
    cms: str
    type: str
    slug: str
    affected: tuple[VersionRange, ...]
    #: the first fixed version of each affected branch (empty: no fix yet)
    fixed_in: tuple[str, ...] = ()
    severity: str = "unknown"
    title: str = ""
    references: tuple[str, ...] = ()
    cve: tuple[str, ...] = ()
    cvss: float | None = None

    def affects(self, version: str | None) -> bool:
        return version is not None and any(version in r for r in self.affected)

    def fix_for(self, version: str) -> str | None:
        """The lowest fixed version above ``version`` (None: no fix known)."""
        later = [v for v in self.fixed_in if compare(v, version) > 0]
        best: str | None = None
        for candidate in later:
            if best is None or compare(candidate, best) < 0:
                best = candidate
        return best

    def record(self) -> dict[str, Any]:
        """The advisory in maintainer's format."""
        data: dict[str, Any] = {
            "id": self.id,
            "cms": self.cms,
            "type": self.type,
            "slug": self.slug,
            "affected": [r.record() or "*" for r in self.affected],
            "fixed_in": list(self.fixed_in) if len(self.fixed_in) > 1 else (self.fixed_in or [None])[0],
            "severity": self.severity,
            "title": self.title,
            "references": list(self.references),
        }
        if self.cve:
            data["cve"] = list(self.cve)
        if self.cvss is not None:
            data["cvss"] = self.cvss
        return data


@dataclass(frozen=True)
class Finding:
    """An installed component whose version an advisory affects."""

    component: Component
    advisory: Advisory

    @property
    def fixed_in(self) -> str | None:
        return None if self.component.version is None else self.advisory.fix_for(self.component.version)

    def record(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "component": self.component.key,
            "type": self.component.type,
            "slug": self.component.slug,
            "name": self.component.name,
            "installed": self.component.version,
            "active": self.component.active,
            "advisory": self.advisory.id,
            "severity": self.advisory.severity,
            "fixed_in": self.fixed_in,
            "title": self.advisory.title,
        }
        if self.advisory.cve:
            data["cve"] = list(self.advisory.cve)
        if self.advisory.references:
            data["references"] = list(self.advisory.references)
        return data


def _severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES)


@dataclass
class Feed:
    advisories: list[Advisory]
    #: which shape it was read from: maintainer, wordfence, wpscan, patchstack, empty
    source: str
    location: str | None = None
    sha256: str | None = None
    #: records left out (Wordfence's informational records, software types with no component here)
    skipped: int = 0
    _index: dict[tuple[str, str, str], list[Advisory]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for advisory in self.advisories:
            self._index.setdefault((advisory.cms, advisory.type, advisory.slug.lower()), []).append(advisory)

    def describe(self) -> dict[str, Any]:
        return {
            "location": self.location,
            "source": self.source,
            "sha256": self.sha256,
            "advisories": len(self.advisories),
            "skipped_records": self.skipped,
        }

    def match(self, cms: str, components: Iterable[Component]) -> list[Finding]:
        """Every (component, advisory) where the advisory affects the installed version, most severe first."""
        found = []
        for component in components:
            if component.version is None:
                continue
            for advisory in self._index.get((cms, component.type, component.slug.lower()), []):
                if advisory.affects(component.version):
                    found.append(Finding(component, advisory))
        found.sort(key=lambda f: (_severity_rank(f.advisory.severity), f.component.key, f.advisory.id))
        return found

    def document(self) -> dict[str, Any]:
        """The feed in maintainer's format."""
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "converted_from": self.source,
            "advisories": [a.record() for a in self.advisories],
        }


def update_plan(findings: Sequence[Finding]) -> list[dict[str, Any]]:
    """Per vulnerable component: the version to update to, the first that fixes all its advisories.

    ``to`` is None when no advisory has a known fix; ``unfixed`` names the advisories no version
    fixes yet (updating does not help against them: deactivate or remove the component).
    """
    by_component: dict[str, list[Finding]] = {}
    for finding in findings:
        by_component.setdefault(finding.component.key, []).append(finding)
    plan = []
    for key, group in by_component.items():
        component = group[0].component
        fixes = [f.fixed_in for f in group if f.fixed_in is not None]
        plan.append(
            {
                "component": key,
                "type": component.type,
                "slug": component.slug,
                "installed": component.version,
                "to": newest(fixes) if fixes else None,
                "advisories": sorted({f.advisory.id for f in group}),
                "unfixed": sorted({f.advisory.id for f in group if f.fixed_in is None}),
                "severity": min((f.advisory.severity for f in group), key=_severity_rank),
            }
        )
    return plan


# ------------------------------------------------------------------ loading


_cache: dict[tuple[str, int, int], Feed] = {}
_cache_lock = threading.Lock()


def load_feed(path: Path) -> Feed:
    """The feed in ``path`` (parsed once per file version, shared by every site of a run)."""
    try:
        stat = path.stat()
    except OSError as exc:
        raise FeedError(f"vulnerability feed {path}: {exc.strerror or exc}") from None
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    with _cache_lock:
        cached = _cache.get(key)
        if cached is not None:
            return cached
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise FeedError(f"vulnerability feed {path}: {exc.strerror or exc}") from None
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise FeedError(f"vulnerability feed {path} is not JSON: {exc}") from None
        feed = parse_feed(data, location=str(path))
        feed.sha256 = hashlib.sha256(raw).hexdigest()
        _cache.clear()  # one feed per run in practice: keep memory to the newest
        _cache[key] = feed
        return feed


def parse_feed(data: Any, *, location: str | None = None) -> Feed:
    """A feed from decoded JSON in any of the shapes this module reads (FeedError otherwise)."""
    where = f"vulnerability feed {location}" if location else "vulnerability feed"
    try:
        if isinstance(data, dict) and "advisories" in data:
            declared = data.get("format")
            if declared not in (None, FORMAT):
                raise FeedError(f"{where}: format is {declared!r}, expected {FORMAT!r}")
            if data.get("version", FORMAT_VERSION) != FORMAT_VERSION:
                raise FeedError(
                    f"{where}: version {data.get('version')!r} of {FORMAT} is not supported (1 is)"
                )
            return Feed(_native(data["advisories"]), "maintainer", location)
        if isinstance(data, list):
            return Feed(_native(data), "maintainer", location)
        if not isinstance(data, dict):
            raise FeedError(f"{where}: expected a JSON object or array, found {type(data).__name__}")
        if not data:
            return Feed([], "empty", location)
        if isinstance(data.get("vulnerabilities"), list):
            return Feed(_patchstack(data["vulnerabilities"]), "patchstack", location)
        values = list(data.values())
        if all(isinstance(v, dict) and "software" in v for v in values[:50]):
            advisories, skipped = _wordfence(data)
            return Feed(advisories, "wordfence", location, skipped=skipped)
        if _looks_like_wpscan(data):
            return Feed(_wpscan(data), "wpscan", location)
    except _RecordError as exc:
        raise FeedError(f"{where}: {exc}") from None
    raise FeedError(
        f"{where}: not a format maintainer reads (its own, Wordfence Intelligence v2, WPScan or "
        "Patchstack; see docs/VULN-FEED.md)"
    )


class _RecordError(ValueError):
    pass


def _strings(value: Any, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,) if value else ()
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(v for v in value if v)
    raise _RecordError(f"{what} must be a string or a list of strings")


def severity_of(label: Any, score: Any = None) -> str:
    """A severity word from a label (``High``, ``moderate``) or else a CVSS score."""
    if isinstance(label, str) and label.strip():
        word = label.strip().lower()
        word = _SEVERITY_WORDS.get(word, word)
        if word in SEVERITIES:
            return word
    number = _number(score)
    if number is None:
        return "unknown"
    if number >= 9:
        return "critical"
    if number >= 7:
        return "high"
    if number >= 4:
        return "medium"
    return "low" if number > 0 else "info"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value in (None, ""):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _cve(values: Iterable[Any]) -> tuple[str, ...]:
    found = []
    for value in values:
        if isinstance(value, str) and value.strip():
            text = value.strip()
            found.append(text if text.upper().startswith("CVE-") else f"CVE-{text}")
    return tuple(found)


def _native(items: Any) -> list[Advisory]:
    if not isinstance(items, list):
        raise _RecordError("'advisories' must be a list")
    return [_native_advisory(item, index) for index, item in enumerate(items)]


def _native_advisory(item: Any, index: int) -> Advisory:
    ident = item.get("id") if isinstance(item, dict) else None
    label = f"advisory #{index}" + (f" ({ident})" if ident else "")
    try:
        if not isinstance(item, dict):
            raise _RecordError("must be an object")
        unknown = set(item) - _NATIVE_KEYS
        if unknown:
            raise _RecordError(f"unknown key(s): {', '.join(sorted(unknown))}")
        if not isinstance(ident, str | int) or isinstance(ident, bool) or str(ident) == "":
            raise _RecordError("needs an 'id' (a string)")
        cms = item.get("cms", "wordpress")
        if not isinstance(cms, str) or not cms:
            raise _RecordError("'cms' must be a CMS name (wordpress, drupal, joomla)")
        kind = item.get("type")
        if kind not in TYPES:
            raise _RecordError(f"'type' must be one of {', '.join(TYPES)} (got {kind!r})")
        slug = item.get("slug") or (CORE_SLUGS.get(cms) if kind == "core" else None)
        if not isinstance(slug, str) or not slug:
            raise _RecordError("needs a 'slug' (the plugin's directory, the theme's or module's name)")
        if "affected" not in item:
            raise _RecordError("needs 'affected' (a version range or a list of them, e.g. \"<6.4.3\")")
        affected = item["affected"]
        ranges = affected if isinstance(affected, list) else [affected]
        if not ranges:
            raise _RecordError("'affected' lists no version range")
        try:
            parsed = tuple(parse_range(r) for r in ranges)
        except ValueError as exc:
            raise _RecordError(f"'affected': {exc}") from None
        severity = item.get("severity")
        if severity is not None and severity_of(severity) == "unknown" and str(severity).lower() != "unknown":
            raise _RecordError(f"'severity' must be one of {', '.join(SEVERITIES)} (got {severity!r})")
        cvss = item.get("cvss")
        if cvss is not None and _number(cvss) is None:
            raise _RecordError("'cvss' must be a number (the CVSS base score)")
        title = item.get("title", "")
        if not isinstance(title, str):
            raise _RecordError("'title' must be a string")
        return Advisory(
            id=str(ident),
            cms=cms,
            type=kind,
            slug=slug,
            affected=parsed,
            fixed_in=_strings(item.get("fixed_in"), "'fixed_in'"),
            severity=severity_of(severity, cvss),
            title=title,
            references=_strings(item.get("references"), "'references'"),
            cve=_cve(_strings(item.get("cve"), "'cve'")),
            cvss=_number(cvss),
        )
    except _RecordError as exc:
        raise _RecordError(f"{label}: {exc}") from None


def _wordfence(data: dict[str, Any]) -> tuple[list[Advisory], int]:
    """Wordfence Intelligence v2 (production or scanner feed): {uuid: record}."""
    advisories: list[Advisory] = []
    skipped = 0
    for key, record in data.items():
        label = f"record {key}"
        if not isinstance(record, dict) or not isinstance(record.get("software"), list):
            raise _RecordError(f"{label}: expected an object with a 'software' list")
        if record.get("informational"):
            skipped += 1  # "not a vulnerability in itself" records, left out as Wordfence CLI does
            continue
        cvss = record.get("cvss") if isinstance(record.get("cvss"), dict) else {}
        assert isinstance(cvss, dict)
        severity = severity_of(cvss.get("rating"), cvss.get("score"))
        references = tuple(r for r in record.get("references") or [] if isinstance(r, str))
        cve = _cve([record.get("cve")])
        for software in record["software"]:
            kind = software.get("type") if isinstance(software, dict) else None
            if kind not in ("core", "plugin", "theme"):
                skipped += 1
                continue
            slug = software.get("slug") or ("wordpress" if kind == "core" else None)
            if not slug:
                raise _RecordError(f"{label}: a {kind} in 'software' has no slug")
            ranges = []
            for name, affected in (software.get("affected_versions") or {}).items():
                if not isinstance(affected, dict):
                    raise _RecordError(f"{label}: affected_versions[{name!r}] is not an object")
                low, high = affected.get("from_version"), affected.get("to_version")
                ranges.append(
                    VersionRange(
                        low=None if low in (None, "", "*") else str(low),
                        low_inclusive=bool(affected.get("from_inclusive", True)),
                        high=None if high in (None, "", "*") else str(high),
                        high_inclusive=bool(affected.get("to_inclusive", True)),
                    )
                )
            if not ranges:
                continue
            advisories.append(
                Advisory(
                    id=str(record.get("id") or key),
                    cms="wordpress",
                    type=kind,
                    slug=str(slug),
                    affected=tuple(ranges),
                    fixed_in=tuple(str(v) for v in software.get("patched_versions") or [] if v),
                    severity=severity,
                    title=str(record.get("title") or ""),
                    references=references,
                    cve=cve,
                    cvss=_number(cvss.get("score")),
                )
            )
    return advisories, skipped


_WPSCAN_GROUPS = {"plugins": "plugin", "themes": "theme", "wordpresses": "core"}


def _looks_like_wpscan(data: dict[str, Any]) -> bool:
    if set(data) & set(_WPSCAN_GROUPS) and all(
        isinstance(data[k], dict) for k in set(data) & set(_WPSCAN_GROUPS)
    ):
        return True
    return all(
        isinstance(v, dict) and isinstance(v.get("vulnerabilities"), list) for v in list(data.values())[:50]
    )


def _wpscan(data: dict[str, Any]) -> list[Advisory]:
    """WPScan API responses: {slug: {"vulnerabilities": [...]}} per plugin, theme or core version."""
    if set(data) & set(_WPSCAN_GROUPS):
        groups = [(_WPSCAN_GROUPS[k], data[k]) for k in _WPSCAN_GROUPS if k in data]
    else:
        groups = [("plugin", data)]
    advisories: list[Advisory] = []
    for kind, entries in groups:
        for key, entry in entries.items():
            if not isinstance(entry, dict) or not isinstance(entry.get("vulnerabilities"), list):
                raise _RecordError(f"{kind} {key}: expected an object with a 'vulnerabilities' list")
            slug = "wordpress" if kind == "core" else str(key)
            for vuln in entry["vulnerabilities"]:
                if not isinstance(vuln, dict):
                    raise _RecordError(f"{kind} {key}: a vulnerability is not an object")
                fixed = vuln.get("fixed_in") or None
                introduced = vuln.get("introduced_in") or None
                if kind == "core" and fixed is None and introduced is None:
                    affected = VersionRange(str(key), True, str(key), True)  # the release it was listed for
                else:
                    affected = VersionRange(low=introduced, high=fixed)
                refs = vuln.get("references") if isinstance(vuln.get("references"), dict) else {}
                assert isinstance(refs, dict)
                cvss = vuln.get("cvss") if isinstance(vuln.get("cvss"), dict) else {}
                assert isinstance(cvss, dict)
                advisories.append(
                    Advisory(
                        id=str(vuln.get("id") or f"wpscan-{slug}-{len(advisories)}"),
                        cms="wordpress",
                        type=kind,
                        slug=slug,
                        affected=(affected,),
                        fixed_in=(str(fixed),) if fixed else (),
                        severity=severity_of(cvss.get("severity"), cvss.get("score")),
                        title=str(vuln.get("title") or ""),
                        references=tuple(u for u in refs.get("url") or [] if isinstance(u, str)),
                        cve=_cve(refs.get("cve") or []),
                        cvss=_number(cvss.get("score")),
                    )
                )
    return advisories


_PATCHSTACK_TYPES = {"plugin": "plugin", "theme": "theme", "wordpress": "core", "core": "core"}
_PATCHSTACK_PRIORITY = {3: "high", 2: "medium", 1: "low"}


def _patchstack(items: list[Any]) -> list[Advisory]:
    """Patchstack threat intelligence: {"vulnerabilities": [flat records]}."""
    advisories = []
    for index, vuln in enumerate(items):
        label = f"vulnerability #{index}"
        if not isinstance(vuln, dict):
            raise _RecordError(f"{label}: not an object")
        label += f" ({vuln.get('id')})"
        kind = _PATCHSTACK_TYPES.get(str(vuln.get("product_type") or "plugin").lower())
        if kind is None:
            raise _RecordError(f"{label}: unknown product_type {vuln.get('product_type')!r}")
        slug = vuln.get("product_slug") or ("wordpress" if kind == "core" else None)
        if not slug:
            raise _RecordError(f"{label}: no product_slug")
        fixed = vuln.get("fixed_in") or None
        affected_in = vuln.get("affected_in")
        try:
            affected = parse_range(affected_in) if affected_in else VersionRange(high=fixed)
        except ValueError as exc:
            raise _RecordError(f"{label}: affected_in: {exc}") from None
        score = vuln.get("cvss_score")
        priority = vuln.get("patch_priority")
        severity = severity_of(None, score)
        if severity == "unknown" and isinstance(priority, int):
            severity = _PATCHSTACK_PRIORITY.get(priority, "unknown")
        url = vuln.get("direct_url") or vuln.get("url")
        advisories.append(
            Advisory(
                id=str(vuln.get("id") if vuln.get("id") is not None else f"patchstack-{index}"),
                cms="wordpress",
                type=kind,
                slug=str(slug),
                affected=(affected,),
                fixed_in=(str(fixed),) if fixed else (),
                severity=severity,
                title=str(vuln.get("title") or ""),
                references=(url,) if isinstance(url, str) and url.startswith("http") else (),
                cve=_cve([vuln.get("cve")]),
                cvss=_number(score),
            )
        )
    return advisories


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m maintainer.cms.vulnfeed convert IN.json OUT.json``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 3 or args[0] != "convert":
        print("usage: python -m maintainer.cms.vulnfeed convert IN.json OUT.json", file=sys.stderr)
        return 2
    try:
        feed = load_feed(Path(args[1]))
    except FeedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    Path(args[2]).write_text(json.dumps(feed.document(), indent=1) + "\n")
    print(
        f"{len(feed.advisories)} advisories from a {feed.source} feed written to {args[2]}", file=sys.stderr
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
