"""The pull-through cache's pieces that need no server: its config, challenges, realms."""

from __future__ import annotations

import pytest

from registry.config import Config, ConfigError, load_config
from registry.proxy.auth import parse_challenges, realm_allowed, token_from_response
from registry.proxy.config import TTL_NOTE

HUB = "https://registry-1.docker.io"


def config(proxy: object) -> Config:
    return Config.from_dict({"proxy": proxy})


def test_distribution_form_is_one_upstream_for_every_repository():
    c = config({"remoteurl": HUB + "/", "username": "u", "password": "p", "ttl": "168h"})
    [up] = c.proxy.upstreams
    assert c.proxy.single and up.prefix == "" and up.remoteurl == HUB and up.ttl == 168 * 3600
    assert up.library and "docker.io" in up.ns
    assert up.remote_name("alpine") == "library/alpine" and up.remote_name("bitnami/redis") == "bitnami/redis"
    assert TTL_NOTE in c.warnings  # the same key means something else here: said once


def test_several_upstreams_with_local_repositories_beside_them():
    c = config({"upstreams": [
        {"prefix": "dockerhub/", "remoteurl": HUB, "credentials": {"username": "u", "password": "p"}, "ttl": "5m"},
        {"prefix": "mirrors/ghcr", "remoteurl": "https://ghcr.io"},
    ]})
    hub, ghcr = c.proxy.upstreams
    assert not c.proxy.single and c.warnings == []
    assert hub.prefix == "dockerhub" and hub.ttl == 300 and hub.username == "u"
    assert hub.remote_name("dockerhub/alpine") == "library/alpine"
    assert hub.remote_name("dockerhubx/alpine") is None and hub.remote_name("local/app") is None
    assert ghcr.remote_name("mirrors/ghcr/owner/app") == "owner/app" and ghcr.ns == ("ghcr.io",)
    assert not ghcr.library and ghcr.remote_name("mirrors/ghcr/app") == "app"
    assert hub.local_name("library/alpine") == "dockerhub/library/alpine"


@pytest.mark.parametrize("proxy, message", [
    ({"remoteurl": HUB, "upstreams": [{"prefix": "a", "remoteurl": HUB}]}, "not both"),
    ({"upstreams": [{"prefix": "a", "remoteurl": HUB}, {"prefix": "a/b", "remoteurl": "https://ghcr.io"}]}, "overlap"),
    ({"upstreams": [{"prefix": "a", "remoteurl": HUB}, {"prefix": "b", "remoteurl": "https://x.io", "ns": ["docker.io"]}]},
     "docker.io"),
    ({"upstreams": [{"prefix": "Bad Prefix", "remoteurl": HUB}]}, "prefix"),
    ({"upstreams": [{"remoteurl": HUB}]}, "prefix is required"),
    ({"remoteurl": "ftp://example.com"}, "http(s) URL"),
    ({"remoteurl": "https://user:pw@example.com"}, "no credentials"),
    ({"remoteurl": HUB, "username": "u"}, "go together"),
    ({"upstreams": [{"prefix": "a", "remoteurl": HUB}], "ttl": "1h"}, "per upstream"),
    ({"remoteurl": HUB, "ttl": "soon"}, "duration"),
])
def test_bad_proxy_blocks_are_one_line_errors(proxy, message):
    with pytest.raises(ConfigError) as err:
        config(proxy)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_password_never_shows_in_a_message():
    with pytest.raises(ConfigError) as err:
        config({"remoteurl": HUB, "username": "u", "password": ["s3cr3t-value"]})
    assert "s3cr3t" not in str(err.value)


def test_unknown_keys_are_named():
    c = config({"upstreams": [{"prefix": "a", "remoteurl": HUB, "ttll": "1m",
                               "credentials": {"username": "u", "password": "p", "pasword": "x"}}]})
    assert any("proxy.upstreams[0].ttll" in w and "ttl" in w for w in c.warnings), c.warnings
    assert any("proxy.upstreams[0].credentials.pasword" in w for w in c.warnings), c.warnings


def test_no_proxy_section_means_an_ordinary_registry():
    c = Config.from_dict({})
    assert not c.proxy.enabled and c.warnings == []


def test_environment_overrides_reach_the_proxy_block(tmp_path):
    c = load_config(None, environ={"REGISTRY_PROXY_REMOTEURL": "https://ghcr.io", "REGISTRY_PROXY_TTL": "10m"})
    [up] = c.proxy.upstreams
    assert up.remoteurl == "https://ghcr.io" and up.ttl == 600 and not up.library


def test_challenges_are_parsed_as_registries_send_them():
    [bearer] = parse_challenges(['Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
                                 'scope="repository:library/alpine:pull"'])
    assert bearer.scheme == "bearer" and bearer.realm == "https://auth.docker.io/token"
    assert bearer.params == {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                             "scope": "repository:library/alpine:pull"}
    basic, token = parse_challenges(['Basic realm="Registry Realm", Bearer realm="https://x.io/t",service=x.io'])
    assert (basic.scheme, basic.realm, token.scheme, token.params["service"]) == ("basic", "Registry Realm", "bearer", "x.io")
    [escaped] = parse_challenges([r'Bearer realm="https://x.io/t\"q",error="insufficient_scope"'])
    assert escaped.realm == 'https://x.io/t"q' and escaped.params["error"] == "insufficient_scope"
    assert parse_challenges(["Bearer"]) [0].params == {}
    assert parse_challenges(["", "   "]) == []


@pytest.mark.parametrize("remote, realm, allowed", [
    ("https://registry-1.docker.io", "https://auth.docker.io/token", True),
    ("https://ghcr.io", "https://ghcr.io/token", True),
    ("https://registry.example.co.uk", "https://auth.example.co.uk/t", True),
    ("https://registry.example.co.uk", "https://evil.co.uk/t", False),  # a public suffix is no site
    ("https://registry-1.docker.io", "https://docker.io.evil.example/token", False),
    ("https://registry-1.docker.io", "http://auth.docker.io/token", False),  # never downgraded to http
    ("http://127.0.0.1:5000", "http://127.0.0.1:5000/auth/token", True),
    ("http://127.0.0.1:5000", "http://127.0.0.1:5001/auth/token", False),  # IP literals: same host:port only
    ("http://localhost:5000", "http://localhost:6000/t", False),
    ("https://quay.io", "javascript:alert(1)", False),
])
def test_credentials_go_only_to_realms_of_the_upstreams_site(remote, realm, allowed):
    assert realm_allowed(remote, realm) is allowed


def test_token_answers():
    assert token_from_response({"token": "t", "expires_in": 300}) == ("t", 300.0)
    assert token_from_response({"access_token": "a"}) == ("a", 60.0)
    for bad in ({}, {"token": ""}, [], "x"):
        with pytest.raises(ValueError):
            token_from_response(bad)


def test_credential_helper_keys():
    c = config({"remoteurl": HUB, "exec": {"command": "/usr/bin/docker-credential-pass", "lifetime": "10m"}})
    [up] = c.proxy.upstreams
    assert up.exec_command == "/usr/bin/docker-credential-pass" and up.exec_lifetime == 600
    c = config({"remoteurl": HUB, "username": "u", "password": "p", "exec": {"command": "helper"}})
    assert c.proxy.upstreams[0].username == "" and any("ignored" in w for w in c.warnings)
    c = config({"upstreams": [{"prefix": "a", "remoteurl": HUB, "credentials": {"exec": {"command": "h"}}}]})
    assert c.proxy.upstreams[0].exec_command == "h" and c.proxy.upstreams[0].exec_lifetime is None
    with pytest.raises(ConfigError):
        config({"remoteurl": HUB, "exec": {"lifetime": "1m"}})
