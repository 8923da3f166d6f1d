"""Scopes and granted access: the one place scope strings and ``access`` claims are parsed.

A scope is ``type[(class)]:name:actions`` (Docker token scope grammar). A repository name may
hold ``host:port``, so the type is cut at the first ``:`` and the actions at the last one.
Repository names must pass :mod:`registry.reference`; anything else is refused here, so a
name trick (case, ``..``, encoded slashes, trailing slash) never reaches a grant.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from typing import Any

from ..reference import is_valid_name

# \Z, not $: a $ also matches before a trailing newline ("pull\n" would pass)
_TYPE_RE = re.compile(r"^([a-z0-9]+)(?:\(([a-z0-9]+)\))?\Z")
_ACTION_RE = re.compile(r"^(?:[a-z][a-z0-9_-]{0,31}|\*)\Z")
#: non-repository resources have short plain names (``registry:catalog:*``)
_OTHER_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._/-]{0,127}\Z")
MAX_SCOPES = 64
MAX_SCOPE_LENGTH = 512
#: the actions a ``*`` stands for when a grant is cut down to what a rule allows
KNOWN_ACTIONS = ("pull", "push", "delete")


class ScopeError(ValueError):
    """A scope string or an ``access`` claim that does not follow the grammar."""


@dataclasses.dataclass(frozen=True, order=True)
class Resource:
    type: str
    name: str


@dataclasses.dataclass(frozen=True)
class Scope:
    """One resource and the actions asked for (or granted) on it."""

    type: str
    name: str
    actions: tuple[str, ...]
    resource_class: str = ""

    @property
    def resource(self) -> Resource:
        return Resource(self.type, self.name)

    def __str__(self) -> str:
        kind = f"{self.type}({self.resource_class})" if self.resource_class else self.type
        return f"{kind}:{self.name}:{','.join(self.actions)}"


def check_resource(rtype: str, name: str) -> None:
    """Raise ScopeError unless ``name`` is a valid name for a resource of ``rtype``."""
    if rtype == "repository":
        if not is_valid_name(name):
            raise ScopeError(f"invalid repository name {name[:100]!r}")
    elif not _OTHER_NAME_RE.match(name):
        raise ScopeError(f"invalid resource name {name[:100]!r}")


def parse_scope(text: str) -> Scope:
    """One ``type[(class)]:name:actions`` scope; the name is what lies between the first and last ``:``."""
    if not isinstance(text, str) or not text or len(text) > MAX_SCOPE_LENGTH:
        raise ScopeError("empty or oversized scope")
    first, last = text.find(":"), text.rfind(":")
    if first < 0 or last == first:
        raise ScopeError(f"malformed scope {text[:100]!r}")
    kind, name, action_text = text[:first], text[first + 1 : last], text[last + 1 :]
    m = _TYPE_RE.match(kind)
    if not m:
        raise ScopeError(f"malformed resource type in scope {text[:100]!r}")
    rtype, rclass = m.group(1), m.group(2) or ""
    check_resource(rtype, name)
    actions = _parse_actions(action_text.split(","), text)
    return Scope(rtype, name, actions, rclass)


def _parse_actions(actions: Iterable[Any], where: str) -> tuple[str, ...]:
    out: list[str] = []
    for action in actions:
        if not isinstance(action, str) or not _ACTION_RE.match(action):
            raise ScopeError(f"malformed action in {where[:100]!r}")
        if action not in out:
            out.append(action)
    return tuple(out)


def parse_scopes(values: Iterable[str]) -> list[Scope]:
    """Every scope in ``values``; each value may hold several scopes separated by spaces."""
    scopes: list[Scope] = []
    for value in values:
        for part in value.split(" "):
            if part:
                scopes.append(parse_scope(part))
                if len(scopes) > MAX_SCOPES:
                    raise ScopeError(f"more than {MAX_SCOPES} scopes requested")
    return merge(scopes)


def merge(scopes: Iterable[Scope]) -> list[Scope]:
    """One scope per resource, actions united, in first-seen order."""
    by_resource: dict[Resource, list[str]] = {}
    classes: dict[Resource, str] = {}
    for scope in scopes:
        actions = by_resource.setdefault(scope.resource, [])
        classes.setdefault(scope.resource, scope.resource_class)
        actions.extend(a for a in scope.actions if a not in actions)
    return [Scope(r.type, r.name, tuple(a), classes[r]) for r, a in by_resource.items() if a]


def format_scopes(scopes: Iterable[Scope]) -> str:
    """The ``scope`` challenge parameter: scopes separated by single spaces."""
    return " ".join(str(s) for s in scopes)


class AccessSet:
    """What a token grants; the :class:`registry.access.Grants` the handlers ask."""

    def __init__(self, scopes: Iterable[Scope] = (), subject: str = "") -> None:
        self.subject = subject
        self._actions: dict[Resource, frozenset[str]] = {}
        for scope in scopes:
            old = self._actions.get(scope.resource, frozenset())
            self._actions[scope.resource] = old | frozenset(scope.actions)

    def allows(self, resource_type: str, name: str, action: str) -> bool:
        actions = self._actions.get(Resource(resource_type, name))
        return bool(actions) and ("*" in actions or action in actions)

    def names(self, resource_type: str, action: str) -> list[str]:
        """The resources of ``resource_type`` this token grants ``action`` on, in claim order."""
        return [r.name for r, a in self._actions.items() if r.type == resource_type and ("*" in a or action in a)]

    def allows_all(self, needed: Iterable[Scope]) -> bool:
        return all(self.allows(s.type, s.name, a) for s in needed for a in s.actions)

    @property
    def empty(self) -> bool:
        """True when the token grants no action at all (it was issued for no scope, or for none allowed)."""
        return not any(self._actions.values())

    def scopes(self) -> list[Scope]:
        return [Scope(r.type, r.name, tuple(sorted(a))) for r, a in sorted(self._actions.items())]

    @classmethod
    def from_claim(cls, claim: Any, subject: str = "") -> "AccessSet":
        """Parse a JWT ``access`` claim ``[{type, name, actions}]``; anything malformed raises ScopeError."""
        if claim is None:
            return cls((), subject)
        if not isinstance(claim, list) or len(claim) > MAX_SCOPES * 4:
            raise ScopeError("access claim must be a list")
        scopes: list[Scope] = []
        for entry in claim:
            if not isinstance(entry, Mapping):
                raise ScopeError("access claim entries must be objects")
            rtype, name, actions = entry.get("type"), entry.get("name"), entry.get("actions")
            if not isinstance(rtype, str) or not _TYPE_RE.match(rtype) or not isinstance(name, str):
                raise ScopeError("access claim entry lacks a valid type or name")
            if not isinstance(actions, list):
                raise ScopeError("access claim actions must be a list")
            check_resource(rtype.split("(")[0], name)
            scopes.append(Scope(rtype.split("(")[0], name, _parse_actions(actions, name)))
        return cls(scopes, subject)


def to_claim(scopes: Iterable[Scope]) -> list[dict[str, Any]]:
    """The JWT ``access`` claim for granted scopes."""
    return [{"type": s.type, "name": s.name, "actions": list(s.actions)} for s in scopes]
