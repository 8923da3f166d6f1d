"""Retention and immutability rules: parsed once from the config, matched per repository and tag.

Patterns are globs. In repository patterns ``*`` and ``?`` stay within one path component and
``**`` crosses them (``team/*`` matches ``team/app`` but not ``team/app/dev``; ``team/**`` matches
both); ``[...]`` is a character class. Tag patterns are the same globs (tags hold no ``/``). A
rule lists one pattern or several; the first retention rule whose repositories match a
repository applies to it (order them from specific to general); every immutability rule applies.

Retention, per rule (``retention.rules[]``):

- ``repositories``: patterns (default ``**``: every repository)
- ``tags``: selectors, each ``{pattern, keep, olderthan}``: among the tags matching ``pattern``
  (newest first, by when the tag last moved), the ``keep`` newest stay; of the others those older
  than ``olderthan`` go (all of them when no ``olderthan``); at least one of the two is required
- ``untagged: {olderthan}``: untagged manifests pushed longer ago than that go (unless an index or
  a subject that stays needs them)
- ``protect``: tag patterns nothing removes (immutable tags are protected as well)

Immutability (``immutability.rules[]``): ``{repositories, tags}``: a matching tag, once it exists,
can neither be moved to another manifest nor deleted; pushing the same manifest again succeeds.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..config import Section, parse_duration

_DAY_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([dw])\s*$")


def parse_age(value: Any, key: str, error: type[Exception] | None = None) -> float:
    """Seconds from a Go duration (``168h``), a number of seconds, or days/weeks (``7d``, ``2w``)."""
    if isinstance(value, str):
        m = _DAY_RE.match(value)
        if m:
            return float(m.group(1)) * (86400.0 if m.group(2) == "d" else 7 * 86400.0)
    return parse_duration(value, key) if error is None else parse_duration(value, key, error)


@functools.lru_cache(maxsize=1024)
def _glob_re(pattern: str) -> re.Pattern[str]:
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 2 if pattern[i + 1 : i + 2] in ("!", "]") else i + 1)
            if end < 0:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body.replace(chr(92), chr(92) * 2)}]")
                i = end + 1
                continue
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z")


def glob_match(pattern: str, value: str) -> bool:
    return _glob_re(pattern).match(value) is not None


def _patterns(s: Section, key: str, default: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """A pattern or a list of patterns at ``key`` (``default`` when absent; required when None)."""
    if s.raw(key) is None:
        if default is None:
            raise s.error(f"{s.where(key)}: required (a pattern or a list of patterns)")
        return default
    items = s.strings(key)
    if not items or not all(items):
        raise s.bad(key, "a pattern or a non-empty list of patterns")
    return tuple(items)


def _age(s: Section, key: str) -> float | None:
    value = s.raw(key)
    return None if value is None else parse_age(value, s.where(key))


@dataclasses.dataclass(frozen=True)
class TagSelector:
    pattern: str
    keep: int | None = None
    olderthan: float | None = None

    def doomed(self, tags: list[tuple[str, dt.datetime | None]], now: dt.datetime) -> set[str]:
        """Of ``(tag, moved_at)`` pairs (already filtered to the unprotected), those that go."""
        matching = [(t, at) for t, at in tags if glob_match(self.pattern, t)]
        # newest first; a tag whose time is unknown counts as newest (never removed by age)
        matching.sort(key=lambda x: (x[1] is None, x[1] or now, x[0]), reverse=True)
        rest = matching[self.keep :] if self.keep is not None else matching
        if self.olderthan is None:
            return {t for t, _ in rest}
        cutoff = now - dt.timedelta(seconds=self.olderthan)
        return {t for t, at in rest if at is not None and at < cutoff}


@dataclasses.dataclass(frozen=True)
class RetentionRule:
    repositories: tuple[str, ...] = ("**",)
    tags: tuple[TagSelector, ...] = ()
    untagged_olderthan: float | None = None
    protect: tuple[str, ...] = ()

    def matches(self, repo: str) -> bool:
        return any(glob_match(p, repo) for p in self.repositories)

    def protects(self, tag: str) -> bool:
        return any(glob_match(p, tag) for p in self.protect)

    def tags_to_remove(self, tags: Mapping[str, dt.datetime | None], now: dt.datetime,
                       immutable: Callable[[str], bool] = lambda _tag: False) -> set[str]:
        candidates = [(t, at) for t, at in tags.items() if not self.protects(t) and not immutable(t)]
        out: set[str] = set()
        for selector in self.tags:
            out |= selector.doomed(candidates, now)
        return out


@dataclasses.dataclass(frozen=True)
class RetentionPolicy:
    rules: tuple[RetentionRule, ...] = ()

    def rule_for(self, repo: str) -> RetentionRule | None:
        return next((r for r in self.rules if r.matches(repo)), None)

    @classmethod
    def from_section(cls, s: Section) -> "RetentionPolicy":
        """``retention: {rules: [...]}``."""
        rules = []
        for rule in s.sections("rules"):
            selectors = []
            for sel in rule.sections("tags"):
                keep = sel.int("keep", None, minimum=0)
                older = _age(sel, "olderthan")
                if keep is None and older is None:
                    raise sel.error(f"{sel.name}: give keep, olderthan or both (else it would remove every match)")
                selectors.append(TagSelector(sel.str("pattern", "*"), keep, older))
            untagged = rule.section("untagged")
            untagged_age = _age(untagged, "olderthan")
            if untagged.keys() and untagged_age is None:
                raise untagged.error(f"{untagged.where('olderthan')}: required")
            rules.append(RetentionRule(
                repositories=_patterns(rule, "repositories", ("**",)),
                tags=tuple(selectors),
                untagged_olderthan=untagged_age,
                protect=_patterns(rule, "protect", ()),
            ))  # fmt: skip
        return cls(tuple(rules))


@dataclasses.dataclass(frozen=True)
class ImmutabilityRule:
    repositories: tuple[str, ...]
    tags: tuple[str, ...]

    def covers(self, repo: str, tag: str) -> bool:
        return any(glob_match(p, repo) for p in self.repositories) and any(glob_match(p, tag) for p in self.tags)

    def describe(self) -> str:
        return f"repositories {', '.join(self.repositories)}; tags {', '.join(self.tags)}"


@dataclasses.dataclass(frozen=True)
class ImmutabilityPolicy:
    rules: tuple[ImmutabilityRule, ...] = ()

    def rule_for(self, repo: str, tag: str) -> ImmutabilityRule | None:
        return next((r for r in self.rules if r.covers(repo, tag)), None)

    def covers_repository(self, repo: str) -> bool:
        return any(any(glob_match(p, repo) for p in r.repositories) for r in self.rules)

    def immutable_tags(self, repo: str, tags: Iterable[str]) -> list[str]:
        return [t for t in tags if self.rule_for(repo, t) is not None]

    def __bool__(self) -> bool:
        return bool(self.rules)

    @classmethod
    def from_section(cls, s: Section) -> "ImmutabilityPolicy":
        """``immutability: {rules: [{repositories, tags}]}``."""
        return cls(tuple(
            ImmutabilityRule(_patterns(rule, "repositories", ("**",)), _patterns(rule, "tags"))
            for rule in s.sections("rules")
        ))  # fmt: skip
