"""``http.ratelimit``: the per-client request-rate limit on the local state (one process).

The same limit shared by three instances through Redis is proven in tests/test_scale.py
(test_request_rate_limit_is_one_budget_across_instances). Periods are long (an hour), so no
window moves while a test runs: nothing here depends on timing.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from api_support import make_config
from helpers import free_port, require_module
from registry.app import create_app
from registry.config import ConfigError
from registry.summary import features_line

CATALOG = "/v2/_catalog"


def _fwd(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


async def _assert_limited(r: Any, period: float) -> None:
    assert r.status == 429, await r.text()
    body = await r.json()
    assert body["errors"][0]["code"] == "TOOMANYREQUESTS", body
    retry = int(r.headers["Retry-After"])
    assert 1 <= retry <= period + 1, retry


async def test_off_by_default(aiohttp_client: Any) -> None:
    config = make_config()
    assert config.http.ratelimit is None
    c = await aiohttp_client(create_app(config))
    for _ in range(40):
        r = await c.get(CATALOG)
        assert r.status == 200, await r.text()


async def test_the_request_over_the_budget_gets_429_with_retry_after_and_others_are_not_affected(
        aiohttp_client: Any) -> None:
    config = make_config(http={"ratelimit": {"requests": 3, "period": "1h", "trustedproxies": ["127.0.0.1"]}})
    c = await aiohttp_client(create_app(config))
    for _ in range(3):
        r = await c.get(CATALOG, headers=_fwd("203.0.113.1"))
        assert r.status == 200, await r.text()
    await _assert_limited(await c.get(CATALOG, headers=_fwd("203.0.113.1")), 3600)
    await _assert_limited(await c.put("/v2/a/manifests/t", data=b"{}", headers=_fwd("203.0.113.1")), 3600)
    # another client (named by the trusted proxy) has its own budget
    r = await c.get(CATALOG, headers=_fwd("203.0.113.2"))
    assert r.status == 200, await r.text()
    # the health-like endpoints a load balancer polls stay open to the limited client
    for path in ("/v2/", "/livez"):
        r = await c.get(path, headers=_fwd("203.0.113.1"))
        assert r.status == 200, (path, await r.text())


async def test_an_untrusted_peer_cannot_get_a_fresh_budget_by_naming_another_client(aiohttp_client: Any) -> None:
    config = make_config(http={"ratelimit": {"requests": 2, "period": "1h"}})  # no trusted proxies
    c = await aiohttp_client(create_app(config))
    for i in range(2):
        assert (await c.get(CATALOG, headers=_fwd(f"198.51.100.{i}"))).status == 200
    await _assert_limited(await c.get(CATALOG, headers=_fwd("198.51.100.9")), 3600)


async def test_burst_caps_requests_at_once_below_the_period_budget(aiohttp_client: Any) -> None:
    # 100 per hour, at most 2 in any 72 s (3600 * 2 / 100)
    config = make_config(http={"ratelimit": {"requests": 100, "period": "1h", "burst": 2}})
    c = await aiohttp_client(create_app(config))
    for _ in range(2):
        assert (await c.get(CATALOG)).status == 200
    await _assert_limited(await c.get(CATALOG), 72)


async def test_redis_unavailable_serves_and_logs_one_line(aiohttp_client: Any, caplog: pytest.LogCaptureFixture
                                                          ) -> None:
    require_module("redis")
    config = make_config(http={"ratelimit": {"requests": 1, "period": "1h"}},
                         redis={"addr": f"127.0.0.1:{free_port()}", "dialtimeout": "200ms"})  # nobody listens
    c = await aiohttp_client(create_app(config))
    with caplog.at_level(logging.WARNING, logger="registry.ratelimit"):
        for _ in range(3):
            r = await c.get(CATALOG)
            assert r.status == 200, await r.text()  # fail open, never a 500
    lines = [rec for rec in caplog.records if rec.name == "registry.ratelimit"]
    assert len(lines) == 1 and "unavailable" in lines[0].getMessage(), lines


@pytest.mark.parametrize("block, message", [
    ({"period": "1m"}, "http.ratelimit.requests is required"),
    ({"requests": 0}, "http.ratelimit.requests: must be at least 1"),
    ({"requests": 5, "burst": 6}, "http.ratelimit.burst"),
    ({"requests": 5, "period": "0s"}, "http.ratelimit.period"),
    ({"requests": 5, "trustedproxies": ["not-a-net"]}, "http.ratelimit.trustedproxies"),
])
def test_bad_values_are_config_errors(block: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        make_config(http={"ratelimit": block})


def test_unknown_keys_are_warned_and_enabled_false_turns_it_off() -> None:
    config = make_config(http={"ratelimit": {"requests": 5, "perod": "1m"}})
    assert config.http.ratelimit is not None and config.http.ratelimit.period == 60.0
    assert any("http.ratelimit.perod" in w for w in config.warnings), config.warnings
    assert "request-rate limit 5 per 1m per client (per process)" in features_line(config)
    off = make_config(http={"ratelimit": {"enabled": False, "requests": 5}})
    assert off.http.ratelimit is None and not off.warnings
