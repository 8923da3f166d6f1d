"""Failed-login limiter: per account and per client address, a sliding window of failures.

While either key has ``failures`` failures within ``window`` seconds, logins for it are refused
before any password check (429 with Retry-After), so guessing costs the attacker time, not us CPU.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable


class FailureLimiter:
    def __init__(self, failures: int, window: float, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 100_000) -> None:
        self.failures = failures
        self.window = window
        self.clock = clock
        self.max_keys = max_keys
        self._log: collections.OrderedDict[str, collections.deque[float]] = collections.OrderedDict()

    def _recent(self, key: str) -> collections.deque[float]:
        now = self.clock()
        entries = self._log.get(key)
        if entries is None:
            return collections.deque()
        while entries and entries[0] <= now - self.window:
            entries.popleft()
        if not entries:
            del self._log[key]
        return entries

    def retry_after(self, *keys: str) -> float:
        """Seconds until a login for ``keys`` may be tried again; 0 when allowed now."""
        wait = 0.0
        for key in keys:
            entries = self._recent(key)
            if len(entries) >= self.failures:
                wait = max(wait, entries[-self.failures] + self.window - self.clock())
        return max(wait, 0.0)

    def fail(self, *keys: str) -> None:
        now = self.clock()
        for key in keys:
            entries = self._log.setdefault(key, collections.deque(maxlen=self.failures * 4))
            entries.append(now)
            self._log.move_to_end(key)
        while len(self._log) > self.max_keys:
            self._log.popitem(last=False)

    def succeed(self, account_key: str) -> None:
        """A correct login clears the account's record (the address keeps its failures)."""
        self._log.pop(account_key, None)
