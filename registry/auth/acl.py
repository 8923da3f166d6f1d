"""ACL rules: an ordered list; the first rule matching the account and resource decides.

Name globs: ``*`` matches within one path component, ``**`` across components, ``?`` one
character; ``${account}`` stands for the caller's account name (inserted literally, never as a
glob), for personal namespaces like ``${account}/**``. An empty ``actions`` list denies.
The grant is the intersection of what was asked and what the deciding rule allows.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence

from .config import AclRule
from .scope import KNOWN_ACTIONS, Scope, merge

ACCOUNT_PLACEHOLDER = "${account}"


@functools.lru_cache(maxsize=4096)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("^" + "".join(out) + "$")


def _escape_glob(text: str) -> str:
    """Make an account name literal inside a glob (our globs have no escape, so drop glob chars)."""
    return "".join(c if c not in "*?" else "\x00" for c in text)


def name_matches(pattern: str, name: str, account: str | None) -> bool:
    if ACCOUNT_PLACEHOLDER in pattern:
        if account is None:
            return False
        pattern = pattern.replace(ACCOUNT_PLACEHOLDER, _escape_glob(account))
    return bool(_glob_regex(pattern).match(name))


def deciding_rule(rules: Sequence[AclRule], account: str | None, scope: Scope) -> AclRule | None:
    for rule in rules:
        if rule.type == scope.type and rule.matches_account(account) and name_matches(rule.name, scope.name, account):
            return rule
    return None


def _intersect(asked: Iterable[str], allowed: frozenset[str]) -> tuple[str, ...]:
    out: list[str] = []
    for action in asked:
        if action == "*":
            if "*" in allowed:
                out.append("*")
            else:
                out.extend(a for a in KNOWN_ACTIONS if a in allowed)
        elif action in allowed or "*" in allowed:
            out.append(action)
    return tuple(dict.fromkeys(out))


def grant(rules: Sequence[AclRule], account: str | None, asked: Iterable[Scope]) -> list[Scope]:
    """What ``account`` (None: anonymous) gets of ``asked``: possibly less, possibly nothing."""
    granted: list[Scope] = []
    for scope in asked:
        rule = deciding_rule(rules, account, scope)
        if rule is None:
            continue
        actions = _intersect(scope.actions, rule.actions)
        if actions:
            granted.append(Scope(scope.type, scope.name, actions, scope.resource_class))
    return merge(granted)


def permits(rules: Sequence[AclRule], account: str | None, resource_type: str, name: str, action: str) -> bool:
    """Whether a token asked for ``action`` on ``resource_type:name`` would grant it (the web UI
    asks this for every repository it shows, without minting a token)."""
    return bool(grant(rules, account, [Scope(resource_type, name, (action,))]))
