"""The token flow end to end inside the real app: challenges, the token server, grants, refresh
tokens, rate limits, JWKS, htpasswd. Tokens are real JWTs from the real token server."""

from __future__ import annotations

import json
from pathlib import Path

import jwt
import pytest
from aiohttp import web

from api_support import digest_of, image_manifest
from auth_support import (ISSUER, PASSWORDS, SERVICE, access, basic, make_pki, make_users, registry_config, sign,
                          token_auth_block, tokenserver_block)
from registry.app import create_app
from registry.auth import keys
from registry.auth.refresh import RefreshStore


@pytest.fixture
def setup(tmp_path):
    pki = make_pki(tmp_path / "pki")
    make_users(tmp_path / "htpasswd")
    return tmp_path, pki


async def _app(aiohttp_client, tmp_path, pki, auth=None, server=True, **ts):
    config = registry_config(tmp_path / "data", auth=auth if auth is not None else token_auth_block(),
                             tokenserver=tokenserver_block(tmp_path, pki, **ts) if server else None)
    return await aiohttp_client(create_app(config))


async def token(client, user=None, scope=(), **params):
    query = [("service", SERVICE)] + [("scope", s) for s in scope] + list(params.items())
    headers = {"Authorization": basic(user, PASSWORDS[user])} if user else {}
    r = await client.get("/auth/token", params=query, headers=headers)
    assert r.status == 200, await r.text()
    return await r.json()


def bearer(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


async def push_image(client, name, headers, tag="v1"):
    layer, config = b"layer-" + name.encode(), b'{"config": 1}'
    for blob in (layer, config):
        r = await client.post(f"/v2/{name}/blobs/uploads/?digest={digest_of(blob)}", data=blob, headers=headers)
        assert r.status == 201, await r.text()
    manifest = image_manifest(config, [layer])
    r = await client.put(f"/v2/{name}/manifests/{tag}", data=manifest, headers={
        **headers, "Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status == 201, await r.text()
    return digest_of(layer)


async def test_challenges(aiohttp_client, setup):
    tmp, pki = setup
    c = await _app(aiohttp_client, tmp, pki)
    r = await c.get("/v2/")
    assert r.status == 401
    assert r.headers["WWW-Authenticate"] == f'Bearer realm="http://127.0.0.1/auth/token",service="{SERVICE}"'
    assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    r = await c.post("/v2/alice/app/blobs/uploads/")
    assert r.status == 401
    assert r.headers["WWW-Authenticate"].endswith(',scope="repository:alice/app:pull,push"')
    body = await r.json()
    assert body["errors"][0]["code"] == "UNAUTHORIZED"
    assert body["errors"][0]["detail"] == [
        {"Type": "repository", "Class": "", "Name": "alice/app", "Action": "pull"},
        {"Type": "repository", "Class": "", "Name": "alice/app", "Action": "push"}]
    # a mount asks for pull on the source too: several resources, space separated
    r = await c.post(f"/v2/alice/app/blobs/uploads/?mount={digest_of(b'x')}&from=shared/base")
    assert 'scope="repository:alice/app:pull,push repository:shared/base:pull"' in r.headers["WWW-Authenticate"]
    r = await c.get("/v2/_catalog")
    assert 'scope="registry:catalog:*"' in r.headers["WWW-Authenticate"]
    r = await c.delete(f"/v2/alice/app/manifests/{digest_of(b'x')}")
    assert 'scope="repository:alice/app:delete"' in r.headers["WWW-Authenticate"]
    r = await c.head("/v2/alice/app/manifests/v1")
    assert r.status == 401 and 'scope="repository:alice/app:pull"' in r.headers["WWW-Authenticate"]
    # the token server and the JWKS are outside /v2/ and need no token
    assert (await c.get("/.well-known/jwks.json")).status == 200


async def test_push_pull_with_tokens(aiohttp_client, setup):
    tmp, pki = setup
    c = await _app(aiohttp_client, tmp, pki)
    t = await token(c, "alice", ["repository:alice/app:pull,push"], account="alice", client_id="test")
    assert t["token"] == t["access_token"] and t["expires_in"] == 300 and t["issued_at"].endswith("Z")
    assert "refresh_token" not in t
    header = jwt.get_unverified_header(t["token"])
    assert header["alg"] == "ES256" and header["kid"] == pki.kid and len(header["x5c"]) == 1
    claims = jwt.decode(t["token"], options={"verify_signature": False})
    assert claims["sub"] == "alice" and claims["aud"] == SERVICE and claims["iss"] == ISSUER
    assert claims["access"] == access("alice/app", "pull", "push")
    layer = await push_image(c, "alice/app", bearer(t["token"]))
    r = await c.get(f"/v2/alice/app/blobs/{layer}", headers=bearer(t["token"]))
    assert r.status == 200 and await r.read() == b"layer-alice/app"
    assert (await c.get("/v2/", headers=bearer(t["token"]))).status == 200
    # a token with nothing granted still authenticates /v2/; elsewhere it gets a 401 asking for the
    # scope (the answer that makes containers/image, containerd and docker fetch a new token)
    empty = await token(c, "bob", ["repository:alice/app:pull"])
    assert jwt.decode(empty["token"], options={"verify_signature": False})["access"] == []
    assert (await c.get("/v2/", headers=bearer(empty["token"]))).status == 200
    r = await c.get("/v2/alice/app/manifests/v1", headers=bearer(empty["token"]))
    assert r.status == 401
    assert r.headers["WWW-Authenticate"].endswith('scope="repository:alice/app:pull",error="insufficient_scope"')
    assert (await r.json())["errors"][0]["code"] == "UNAUTHORIZED"
    # a token granting something, but not this, gets a 403 (the answer oras-py re-asks on)
    pull = await token(c, "alice", ["repository:alice/app:pull"])
    r = await c.post("/v2/alice/app/blobs/uploads/", headers=bearer(pull["token"]))
    assert r.status == 403
    assert r.headers["WWW-Authenticate"].endswith('scope="repository:alice/app:pull,push",error="insufficient_scope"')
    assert (await r.json())["errors"][0]["code"] == "DENIED"
    r = await c.get("/v2/bob/app/tags/list", headers=bearer(pull["token"]))
    assert r.status == 403 and 'scope="repository:bob/app:pull"' in r.headers["WWW-Authenticate"]


@pytest.mark.parametrize("configured", [401, 403])
async def test_insufficient_scope_status_override(aiohttp_client, setup, configured):
    """``insufficientscopestatus: 401`` answers like distribution, ``403`` like RFC 6750, for every token."""
    tmp, pki = setup
    c = await _app(aiohttp_client, tmp, pki, auth=token_auth_block(insufficientscopestatus=configured))
    for scopes in (["repository:alice/app:pull"], []):
        t = await token(c, "alice", scopes)
        r = await c.post("/v2/alice/app/blobs/uploads/", headers=bearer(t["token"]))
        assert r.status == configured and 'error="insufficient_scope"' in r.headers["WWW-Authenticate"]
        assert (await r.json())["errors"][0]["code"] == {401: "UNAUTHORIZED", 403: "DENIED"}[configured]


async def test_anonymous_and_catalog(aiohttp_client, setup):
    tmp, pki = setup
    c = await _app(aiohttp_client, tmp, pki)
    admin = await token(c, "admin", ["repository:public/img:pull,push", "registry:catalog:*"])
    await push_image(c, "public/img", bearer(admin["token"]))
    anon = await token(c, None, ["repository:public/img:pull,push"])
    assert jwt.decode(anon["token"], options={"verify_signature": False})["access"] == access("public/img", "pull")
    assert (await c.get("/v2/public/img/manifests/v1", headers=bearer(anon["token"]))).status == 200
    assert (await c.post("/v2/public/img/blobs/uploads/", headers=bearer(anon["token"]))).status == 403
    r = await c.get("/v2/_catalog", headers=bearer(admin["token"]))
    assert r.status == 200 and (await r.json())["repositories"] == ["public/img"]
    alice = await token(c, "alice", ["registry:catalog:*"])  # not granted: an empty token, so a 401
    r = await c.get("/v2/_catalog", headers=bearer(alice["token"]))
    assert r.status == 401 and r.headers["WWW-Authenticate"].endswith(
        'scope="registry:catalog:*",error="insufficient_scope"')
    # offline tokens are never issued to anonymous callers
    assert "refresh_token" not in await token(c, None, [], offline_token="true")


async def test_mount_needs_pull_on_source(aiohttp_client, setup):
    tmp, pki = setup
    c = await _app(aiohttp_client, tmp, pki)
    t = await token(c, "alice", ["repository:alice/src:pull,push"])
    layer = await push_image(c, "alice/src", bearer(t["token"]))
    with_pull = await token(c, "alice", ["repository:alice/dst:pull,push", "repository:alice/src:pull"])
    r = await c.post(f"/v2/alice/dst/blobs/uploads/?mount={layer}&from=alice/src", headers=bearer(with_pull["token"]))
    assert r.status == 201
    without = await token(c, "alice", ["repository:alice/dst2:pull,push"])
    r = await c.post(f"/v2/alice/dst2/blobs/uploads/?mount={layer}&from=alice/src", headers=bearer(without["token"]))
    assert r.status == 202  # falls back to a plain upload
    bob = await token(c, "bob", ["repository:bob/x:pull,push", "repository:alice/src:pull"])
    r = await c.post(f"/v2/bob/x/blobs/uploads/?mount={layer}&from=alice/src", headers=bearer(bob["token"]))
    assert r.status == 202  # bob may not read alice's repository: no mount


async def test_oauth2_password_and_refresh(aiohttp_client, setup):
    tmp, pki = setup
    c = await _app(aiohttp_client, tmp, pki)
    form = {"grant_type": "password", "service": SERVICE, "client_id": "cli", "access_type": "offline",
            "scope": "repository:alice/app:pull,push repository:bob/x:pull", "username": "alice",
            "password": PASSWORDS["alice"]}
    r = await c.post("/auth/token", data=form)
    assert r.status == 200, await r.text()
    body = await r.json()
    assert body["scope"] == "repository:alice/app:pull,push" and body["expires_in"] == 300
    assert body["refresh_token"].startswith("rt1_") and "token" not in body
    assert r.headers["Cache-Control"] == "no-store"
    refresh = body["refresh_token"]
    r = await c.post("/auth/token", data={"grant_type": "refresh_token", "service": SERVICE, "client_id": "cli",
                                          "refresh_token": refresh, "scope": "repository:alice/other:pull"})
    body = await r.json()
    assert r.status == 200 and body["scope"] == "repository:alice/other:pull" and body["refresh_token"] == refresh
    # refresh tokens survive a restart: a new app over the same store file
    c2 = await _app(aiohttp_client, tmp, pki)
    r = await c2.post("/auth/token", data={"grant_type": "refresh_token", "service": SERVICE, "client_id": "cli",
                                           "refresh_token": refresh})
    assert r.status == 200
    # Docker's GET with offline_token=true gives a refresh token bound to its client_id
    t = await token(c, "bob", [], offline_token="true", client_id="docker")
    r = await c.post("/auth/token", data={"grant_type": "refresh_token", "service": SERVICE, "client_id": "docker",
                                          "refresh_token": t["refresh_token"], "scope": "repository:bob/y:push"})
    assert (await r.json())["scope"] == "repository:bob/y:push"
    # malformed requests are 400s with OAuth2 error codes
    r = await c.post("/auth/token", data={"grant_type": "password", "username": "alice", "password": "x"})
    assert r.status == 400 and (await r.json())["error"] == "invalid_request"
    r = await c.post("/auth/token", data={"grant_type": "client_credentials", "client_id": "c"})
    assert r.status == 400 and (await r.json())["error"] == "unsupported_grant_type"
    r = await c.get("/auth/token", params={"service": "other-service"})
    assert r.status == 400


async def test_refresh_token_revocation_is_immediate(aiohttp_client, setup):
    tmp, pki = setup
    c = await _app(aiohttp_client, tmp, pki)
    t = await token(c, "alice", [], offline_token="true", client_id="cli")
    RefreshStore(tmp / "refresh-tokens.json", 3600).revoke(account="alice")  # what the CLI does
    r = await c.post("/auth/token", data={"grant_type": "refresh_token", "service": SERVICE, "client_id": "cli",
                                          "refresh_token": t["refresh_token"]})
    assert r.status == 401


def from_address(client, address: str):
    """A client session whose connections leave from ``address`` (any 127.0.0.0/8 address works on
    Linux loopback), so the server sees a real, different peer address."""
    import aiohttp
    return aiohttp.ClientSession(str(client.make_url("")), connector=aiohttp.TCPConnector(local_addr=(address, 0)))


async def test_failed_logins_are_rate_limited(aiohttp_client, setup):
    """Token server: an attacker who knows a user name slows only its own address."""
    tmp, pki = setup
    c = await _app(aiohttp_client, tmp, pki, ratelimit={"failures": 3, "window": "1m", "addressfailures": 5})
    attacker, owner = from_address(c, "127.0.0.2"), from_address(c, "127.0.0.3")

    async def login(session, user, password):
        async with session.get("/auth/token", params={"service": SERVICE},
                               headers={"Authorization": basic(user, password)}) as r:
            return r.status, r.headers

    async with attacker, owner:
        for _ in range(3):
            status, headers = await login(attacker, "alice", "wrong")
            assert status == 401 and headers["WWW-Authenticate"].startswith("Basic ")
        status, headers = await login(attacker, "alice", PASSWORDS["alice"])
        assert status == 429 and int(headers["Retry-After"]) > 0  # even the right password waits, there
        assert (await login(owner, "alice", PASSWORDS["alice"]))[0] == 200  # alice elsewhere is not locked out
        assert (await login(attacker, "bob", PASSWORDS["bob"]))[0] == 200  # nor is bob from the attacker's address
        # spraying other accounts from that address hits the address budget (5): then it is refused everything
        for user in ("reader", "admin"):
            assert (await login(attacker, user, "wrong"))[0] == 401
        assert (await login(attacker, "bob", PASSWORDS["bob"]))[0] == 429
        assert (await login(owner, "bob", PASSWORDS["bob"]))[0] == 200
    # anonymous requests carry no credentials and are not limited
    assert (await c.get("/auth/token", params={"service": SERVICE})).status == 200


async def test_registry_with_rootcertbundle_and_jwks(aiohttp_client, setup, tmp_path_factory):
    """A registry without the token server trusts tokens through the bundle (x5c/thumbprint) or a JWKS."""
    tmp, pki = setup
    server = await _app(aiohttp_client, tmp, pki, auth={})
    t = (await token(server, "alice", ["repository:alice/app:pull"]))["token"]
    jwks = await (await server.get("/.well-known/jwks.json")).json()
    assert jwks["keys"][0]["kid"] == pki.kid and jwks["keys"][0]["kty"] == "EC"
    jwks_file = tmp / "jwks.json"
    jwks_file.write_text(json.dumps(jwks))
    for auth in (token_auth_block(rootcertbundle=str(pki.bundle_path)), token_auth_block(jwks=str(jwks_file))):
        reg = await aiohttp_client(create_app(registry_config(tmp / "data2", auth=auth)))
        r = await reg.get("/v2/alice/app/tags/list", headers=bearer(t))
        assert r.status == 404, await r.text()  # authorized: the repository just does not exist
    # kid only (no x5c): the RFC 7638 thumbprint of a bundle certificate's key
    kid_only = sign(pki.key, headers={"kid": pki.kid}, access=access("alice/app", "pull"))
    reg = await aiohttp_client(create_app(registry_config(tmp / "data3", auth=token_auth_block(
        rootcertbundle=str(pki.bundle_path)))))
    assert (await reg.get("/v2/alice/app/tags/list", headers=bearer(kid_only))).status == 404
    libtrust = sign(pki.key, headers={"kid": keys.libtrust_key_id(pki.key.public_key())},
                    access=access("alice/app", "pull"))
    assert (await reg.get("/v2/alice/app/tags/list", headers=bearer(libtrust))).status == 404


async def test_jwks_url_refetched_for_unknown_kid(aiohttp_client, aiohttp_server, setup):
    tmp, pki = setup
    current = {"keys": []}

    async def serve_jwks(request):
        return web.json_response(current)

    jwks_app = web.Application()
    jwks_app.router.add_get("/jwks", serve_jwks)
    jwks_server = await aiohttp_server(jwks_app)
    reg = await aiohttp_client(create_app(registry_config(tmp / "data", auth=token_auth_block(
        jwks=str(jwks_server.make_url("/jwks"))))))
    new_key = keys.generate_private_key("rsa")
    t = sign(new_key, alg="RS256", headers={"kid": "rotated-1"}, access=access("alice/app", "pull"))
    assert (await reg.get("/v2/alice/app/tags/list", headers=bearer(t))).status == 401
    current["keys"] = [dict(keys.public_jwk(new_key.public_key()), kid="rotated-1")]
    from registry.auth import bearer as bearer_mod
    bearer_mod.JWKS_REFRESH_MIN_INTERVAL = 0.0  # the first fetch happened just now
    try:
        assert (await reg.get("/v2/alice/app/tags/list", headers=bearer(t))).status == 404
    finally:
        bearer_mod.JWKS_REFRESH_MIN_INTERVAL = 30.0


async def test_autoredirect_realm(aiohttp_client, setup):
    tmp, pki = setup
    c = await _app(aiohttp_client, tmp, pki, auth={"token": {"service": SERVICE, "issuer": ISSUER,
                                                              "autoredirect": True}})
    r = await c.get("/v2/", headers={"Host": "registry.example:8443", "X-Forwarded-Proto": "http"})
    assert r.headers["WWW-Authenticate"].startswith('Bearer realm="http://registry.example:8443/auth/token"')


async def test_htpasswd_registry(aiohttp_client, setup):
    tmp, pki = setup
    users = tmp / "htpasswd"
    c = await aiohttp_client(create_app(registry_config(tmp / "data", auth={
        "htpasswd": {"realm": "my realm", "path": str(users)}})))
    r = await c.get("/v2/")
    assert r.status == 401 and r.headers["WWW-Authenticate"] == 'Basic realm="my realm"'
    assert (await r.json())["errors"][0]["code"] == "UNAUTHORIZED"
    ok = {"Authorization": basic("bob", PASSWORDS["bob"])}
    assert (await c.get("/v2/", headers=ok)).status == 200
    await push_image(c, "any/repo", ok)
    assert (await c.get("/v2/_catalog", headers=ok)).status == 200
    assert (await c.get("/v2/", headers={"Authorization": basic("bob", "nope")})).status == 401
    # the file is re-read when it changes
    make_users(users, {"bob": "new-password"})
    import asyncio
    await asyncio.sleep(1.1)
    assert (await c.get("/v2/", headers=ok)).status == 401
    assert (await c.get("/v2/", headers={"Authorization": basic("bob", "new-password")})).status == 200


async def test_config_errors_surface_at_create_app(setup):
    tmp, pki = setup
    from registry.config import ConfigError
    with pytest.raises(ConfigError, match="rootcertbundle or jwks"):
        create_app(registry_config(tmp / "d", auth=token_auth_block()))
    with pytest.raises(ConfigError, match="does not exist"):
        create_app(registry_config(tmp / "d", auth={"htpasswd": {"path": str(tmp / "missing")}}))
    bad = tokenserver_block(tmp, pki, certificate=str(tmp / "pki" / "bundle.crt"))
    Path(bad["certificate"]).write_bytes(keys.certificate_pem(pki.attacker_cert))
    with pytest.raises(ConfigError, match="is not for the key"):
        create_app(registry_config(tmp / "d", auth=token_auth_block(), tokenserver=bad))


async def test_validated_tokens_are_cached_but_still_expire(aiohttp_client, setup):
    import asyncio
    import time as time_mod
    tmp, pki = setup
    c = await _app(aiohttp_client, tmp, pki)
    now = int(time_mod.time())
    # expired 57 s ago: inside the 60 s leeway for about three more seconds (room for a loaded machine)
    exp = now - 57
    t = sign(pki.key, headers={"kid": pki.kid}, access=access("alice/app", "pull"), exp=exp, nbf=now - 600,
             iat=now - 600)
    assert (await c.get("/v2/alice/app/tags/list", headers=bearer(t))).status == 404
    assert (await c.get("/v2/alice/app/tags/list", headers=bearer(t))).status == 404  # from the cache
    await asyncio.sleep(max(0.0, exp + 60 + 1.2 - time_mod.time()))
    r = await c.get("/v2/alice/app/tags/list", headers=bearer(t))
    assert r.status == 401 and 'error="invalid_token"' in r.headers["WWW-Authenticate"]


async def test_rate_limit_behind_a_trusted_proxy_counts_client_addresses(aiohttp_client, setup):
    tmp, pki = setup
    c = await _app(aiohttp_client, tmp, pki, ratelimit={"failures": 2, "window": "1m",
                                                         "trustedproxies": ["127.0.0.0/8"]})

    async def login(user, password, client_ip):
        return await c.get("/auth/token", params={"service": SERVICE}, headers={
            "Authorization": basic(user, password), "X-Forwarded-For": f"203.0.113.9, {client_ip}"})

    for _ in range(2):
        assert (await login("alice", "x", "198.51.100.7")).status == 401
    assert (await login("alice", PASSWORDS["alice"], "198.51.100.7")).status == 429  # that client is limited
    assert (await login("alice", PASSWORDS["alice"], "198.51.100.8")).status == 200  # others behind the proxy are not
    # hops left of the last untrusted one are the client's own claims: a forged one buys no fresh budget
    r = await c.get("/auth/token", params={"service": SERVICE}, headers={
        "Authorization": basic("alice", PASSWORDS["alice"]), "X-Forwarded-For": "203.0.113.77, 198.51.100.7"})
    assert r.status == 429


async def test_http_prefix_is_protected(aiohttp_client, setup):
    tmp, pki = setup
    from registry.config import Config
    raw = {"storage": {"filesystem": {"rootdirectory": str(tmp / "data")}},
           "http": {"secret": "s", "prefix": "/registry/"}, "auth": token_auth_block(),
           "tokenserver": tokenserver_block(tmp, pki)}
    c = await aiohttp_client(create_app(Config.from_dict(raw)))
    r = await c.post("/registry/v2/alice/app/blobs/uploads/")
    assert r.status == 401 and 'scope="repository:alice/app:pull,push"' in r.headers["WWW-Authenticate"]
    t = await token(c, "alice", ["repository:alice/app:pull,push"])
    assert (await c.post("/registry/v2/alice/app/blobs/uploads/", headers=bearer(t["token"]))).status == 202


async def test_htpasswd_failed_logins_are_limited(aiohttp_client, setup):
    """Basic auth: the same budgets as the token server, keyed by the peer address and the account."""
    tmp, pki = setup
    c = await aiohttp_client(create_app(registry_config(tmp / "data", auth={
        "htpasswd": {"realm": "r", "path": str(tmp / "htpasswd")}})))
    from registry.auth.middleware import BASIC_FAILURES
    attacker, owner = from_address(c, "127.0.0.4"), from_address(c, "127.0.0.5")

    async def get(session, user, password):
        async with session.get("/v2/", headers={"Authorization": basic(user, password)}) as r:
            return r.status, r.headers, await r.read()

    async with attacker, owner:
        for _ in range(BASIC_FAILURES):
            assert (await get(attacker, "bob", "guess"))[0] == 401
        status, headers, body = await get(attacker, "bob", PASSWORDS["bob"])
        assert status == 429 and json.loads(body)["errors"][0]["code"] == "TOOMANYREQUESTS"
        assert int(headers["Retry-After"]) > 0
        assert (await get(owner, "bob", PASSWORDS["bob"]))[0] == 200
        assert (await get(attacker, "alice", PASSWORDS["alice"]))[0] == 200


def test_inconsistent_issuer_is_warned(setup, caplog):
    tmp, pki = setup
    create_app(registry_config(tmp / "d", auth=token_auth_block(issuer="other"),
                               tokenserver=tokenserver_block(tmp, pki)))
    assert "differs from tokenserver.issuer" in caplog.text
