"""The attack table: every forged, stolen, stretched or malformed credential is refused (401/403)
and nothing is written, neither to storage nor to the refresh-token store.

Each attack runs against the real app (registry + token server in one process, token auth with a
root certificate bundle), after an admin pushed ``alice/app:v1``. The storage tree and the refresh
store are compared byte for byte (size and mtime of every file) before and after.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from api_support import digest_of, image_manifest
from auth_support import (ISSUER, PASSWORDS, SERVICE, Pki, access, b64url, basic, chain_cert, forge, make_pki,
                          make_users, registry_config, sign, token_auth_block, tokenserver_block, tree)
from registry.app import create_app
from registry.auth import keys
from registry.auth.htpasswd import set_user

OCI = "application/vnd.oci.image.manifest.v1+json"


@dataclasses.dataclass
class Ctx:
    client: Any
    pki: Pki
    tmp: Path
    manifest_digest: str
    refresh: str  # alice's refresh token, client_id "cli"
    alice_pull: str  # a real token: pull on alice/app
    alice_push: str  # a real token: pull,push on alice/app

    async def token(self, user: str | None, *scopes: str) -> str:
        headers = {"Authorization": basic(user, PASSWORDS[user])} if user else {}
        r = await self.client.get("/auth/token", params=[("service", SERVICE)] + [("scope", s) for s in scopes],
                                  headers=headers)
        assert r.status == 200
        return (await r.json())["token"]

    # requests the attacks send
    def get_manifest(self, tok: str, name: str = "alice/app", path: str | None = None) -> Awaitable[Any]:
        return self.client.get(path or f"/v2/{name}/manifests/v1", headers=_auth(tok))

    def start_upload(self, tok: str, name: str = "alice/app") -> Awaitable[Any]:
        return self.client.post(f"/v2/{name}/blobs/uploads/", headers=_auth(tok))

    def put_manifest(self, tok: str, name: str = "alice/app", tag: str = "evil") -> Awaitable[Any]:
        body = image_manifest(b"{}", [])
        return self.client.put(f"/v2/{name}/manifests/{tag}", data=body,
                               headers={**_auth(tok), "Content-Type": OCI})

    def delete_manifest(self, tok: str, name: str = "alice/app") -> Awaitable[Any]:
        return self.client.delete(f"/v2/{name}/manifests/{self.manifest_digest}", headers=_auth(tok))

    def refresh_grant(self, refresh: str, client_id: str = "cli", **extra: str) -> Awaitable[Any]:
        return self.client.post("/auth/token", data={"grant_type": "refresh_token", "service": SERVICE,
                                                     "client_id": client_id, "refresh_token": refresh, **extra})

    def login(self, header: str | None, **params: str) -> Awaitable[Any]:
        return self.client.get("/auth/token", params={"service": SERVICE, **params},
                               headers={"Authorization": header} if header else {})


def _auth(tok: str) -> dict[str, str]:
    return {"Authorization": tok if tok.startswith(("Basic ", "Bearer ")) or tok == "" else f"Bearer {tok}"}


def _now() -> int:
    return int(time.time())


def _ours(ctx: Ctx, **claims: Any) -> str:
    """Signed with the real key (as a compromised or buggy issuer would): only the claims are wrong."""
    claims.setdefault("access", access("alice/app", "pull", "push", "delete"))
    return sign(ctx.pki.key, headers={"kid": ctx.pki.kid}, **claims)


def _tamper(tok: str, **changes: Any) -> str:
    head, payload, sig = tok.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    return ".".join([head, b64url(json.dumps(claims).encode()), sig])


def _pubkey_pem(ctx: Ctx) -> bytes:
    return ctx.pki.key.public_key().public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)


def _hs256_with_public_key(ctx: Ctx, header: dict[str, Any]) -> str:
    """The classic algorithm confusion: HMAC keyed with the (public) verification key."""
    import hmac as hmac_mod
    claims = {"iss": ISSUER, "sub": "alice", "aud": SERVICE, "exp": _now() + 300, "nbf": _now(),
              "access": access("alice/app", "pull", "push", "delete")}
    signing_input = b64url(json.dumps({"alg": "HS256", "typ": "JWT", **header}).encode()) + "." + b64url(
        json.dumps(claims).encode())
    sig = hmac_mod.new(_pubkey_pem(ctx), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64url(sig)


def _none(ctx: Ctx, alg: str) -> str:
    return forge({"alg": alg, "typ": "JWT", "kid": ctx.pki.kid},
                 {"iss": ISSUER, "sub": "alice", "aud": SERVICE, "exp": _now() + 300,
                  "access": access("alice/app", "pull", "push", "delete")})


def _x5c(*certs: Any) -> list[str]:
    return [keys.cert_der_b64(c) for c in certs]


def _attacker_ca_chain(ctx: Ctx) -> tuple[Any, list[str]]:
    ca_key = keys.generate_private_key("ec")
    ca = keys.make_certificate(ca_key, "test-root-ca", ca=True)  # same name as the real CA
    leaf_key = keys.generate_private_key("ec")
    leaf = keys.make_certificate(leaf_key, "token-signer", ca_key, ca)
    return leaf_key, _x5c(leaf, ca)


def _constrained_chain(ctx: Ctx, kind: str) -> tuple[Any, list[str]]:
    """A chain to the real CA of the bundle that breaks one of its rules (the hand-written check before
    cryptography's verifier accepted each of these): the leaf key signs the token."""
    from cryptography import x509

    leaf_key, mid_key = keys.generate_private_key("ec"), keys.generate_private_key("ec")
    if kind == "leaf is a CA":
        return leaf_key, _x5c(keys.make_certificate(leaf_key, "token-signer", ctx.pki.ca_key, ctx.pki.ca_cert, ca=True))
    if kind == "path length":  # root -> intermediate (pathlen 0) -> intermediate -> leaf
        mid = chain_cert(mid_key, "mid", ctx.pki.ca_key, ctx.pki.ca_cert, ca=True, path_length=0)
        low_key = keys.generate_private_key("ec")
        low = chain_cert(low_key, "low", mid_key, mid, ca=True)
        return leaf_key, _x5c(chain_cert(leaf_key, "token-signer", low_key, low), low, mid)
    if kind == "name constraints":  # an intermediate limited to example.com, a leaf for evil.test
        mid = chain_cert(mid_key, "mid", ctx.pki.ca_key, ctx.pki.ca_cert, ca=True, extensions=[
            (x509.NameConstraints([x509.DNSName("example.com")], None), True)])
        leaf = chain_cert(leaf_key, "token-signer", mid_key, mid, extensions=[
            (x509.SubjectAlternativeName([x509.DNSName("tokens.evil.test")]), False)])
        return leaf_key, _x5c(leaf, mid)
    raise AssertionError(kind)


def _chain_token(ctx: Ctx, key: Any, x5c: list[str]) -> str:
    """A token signed by ``key`` whose ``x5c`` is ``x5c`` (its first certificate is for ``key``)."""
    return sign(key, headers={"x5c": x5c}, access=_full(ctx))


def _full(ctx: Ctx) -> list[dict[str, Any]]:
    return access("alice/app", "pull", "push", "delete")


Attack = Callable[[Ctx], Awaitable[Any]]

ATTACKS: list[tuple[str, Attack]] = [
    # --- forged or unverifiable signatures
    ("alg none", lambda c: c.start_upload(_none(c, "none"))),
    ("alg None (case variant)", lambda c: c.start_upload(_none(c, "None"))),
    ("HS256 signed with the public key, kid", lambda c: c.start_upload(_hs256_with_public_key(c, {"kid": c.pki.kid}))),
    ("HS256 signed with the public key, x5c", lambda c: c.start_upload(
        _hs256_with_public_key(c, {"x5c": _x5c(c.pki.cert)}))),
    ("RS256 header on an EC key id", lambda c: c.start_upload(sign(
        keys.generate_private_key("rsa"), alg="RS256", headers={"kid": c.pki.kid}, access=_full(c)))),
    ("unknown kid", lambda c: c.start_upload(sign(c.pki.attacker_key, headers={"kid": "attacker-key"},
                                                  access=_full(c)))),
    ("trusted kid, attacker signature", lambda c: c.start_upload(sign(c.pki.attacker_key, headers={"kid": c.pki.kid},
                                                                      access=_full(c)))),
    ("no key hint at all", lambda c: c.start_upload(sign(c.pki.attacker_key, access=_full(c)))),
    ("x5c self-signed by the attacker (same subject)", lambda c: c.start_upload(sign(
        c.pki.attacker_key, headers={"x5c": _x5c(c.pki.attacker_cert)}, access=_full(c)))),
    ("x5c chain to the attacker's own CA", lambda c: c.start_upload(_chain_token(c, *_attacker_ca_chain(c)))),
    ("x5c leaf issued by the non-CA token certificate", lambda c: c.start_upload(sign(
        c.pki.attacker_key, access=_full(c), headers={"x5c": _x5c(keys.make_certificate(
            c.pki.attacker_key, "leaf", c.pki.key, c.pki.cert), c.pki.cert)}))),
    ("x5c of the real certificate, attacker signature", lambda c: c.start_upload(sign(
        c.pki.attacker_key, headers={"x5c": _x5c(c.pki.cert)}, access=_full(c)))),
    *[(f"x5c chain to the real CA, {kind}", lambda c, kind=kind: c.start_upload(
        _chain_token(c, *_constrained_chain(c, kind)))) for kind in ("leaf is a CA", "path length", "name constraints")],
    ("x5c not base64 DER", lambda c: c.start_upload(sign(c.pki.key, headers={"x5c": ["bm90IGEgY2VydA=="]},
                                                         access=_full(c)))),
    ("self-signed jwk header", lambda c: c.start_upload(sign(
        c.pki.attacker_key, access=_full(c), headers={"jwk": keys.public_jwk(c.pki.attacker_key.public_key())}))),
    ("jwk of the trusted key, attacker signature", lambda c: c.start_upload(sign(
        c.pki.attacker_key, access=_full(c), headers={"jwk": keys.public_jwk(c.pki.key.public_key())}))),
    ("crit header", lambda c: c.start_upload(sign(c.pki.key, headers={"kid": c.pki.kid, "crit": ["exp"]},
                                                  access=_full(c)))),
    ("tampered payload (access widened)", lambda c: c.start_upload(_tamper(
        c.alice_pull, access=access("alice/app", "*")))),
    ("tampered payload (other subject)", lambda c: c.start_upload(_tamper(c.alice_push, sub="admin",
                                                                          access=access("bob/app", "*")))),
    ("signature stripped", lambda c: c.start_upload(c.alice_push.rsplit(".", 1)[0] + ".")),
    # --- well signed, wrong claims
    ("expired", lambda c: c.start_upload(_ours(c, exp=_now() - 120, nbf=_now() - 600, iat=_now() - 600))),
    ("not yet valid", lambda c: c.start_upload(_ours(c, nbf=_now() + 120))),
    ("no exp", lambda c: c.start_upload(_ours(c, exp=None))),
    ("wrong iss", lambda c: c.start_upload(_ours(c, iss="evil-issuer"))),
    ("no iss", lambda c: c.start_upload(_ours(c, iss=None))),
    ("wrong aud", lambda c: c.start_upload(_ours(c, aud="other-registry"))),
    ("aud list without our service", lambda c: c.start_upload(_ours(c, aud=["a", "b"]))),
    ("malformed access claim", lambda c: c.start_upload(_ours(c, access="all"))),
    ("access claim for a name with trailing slash", lambda c: c.start_upload(
        _ours(c, access=access("alice/app/", "*")))),
    ("access claim with a wildcard name", lambda c: c.start_upload(_ours(c, access=access("*", "*")))),
    # --- real tokens used beyond their grant
    ("token for repository a used on b", lambda c: c.get_manifest(c.alice_push, name="bob/app")),
    ("pull token used to push (upload)", lambda c: c.start_upload(c.alice_pull)),
    ("pull token used to push (manifest)", lambda c: c.put_manifest(c.alice_pull)),
    ("pull token used to delete", lambda c: c.delete_manifest(c.alice_pull)),
    ("push token used to delete", lambda c: c.delete_manifest(c.alice_push)),
    ("name trick: case", lambda c: c.start_upload(c.alice_push, name="Alice/app")),
    ("name trick: dot-dot", lambda c: c.put_manifest(c.alice_push, name="alice/app/../../bob/app")),
    ("name trick: encoded dot-dot", lambda c: c.client.put(
        "/v2/alice/app%2F..%2F..%2Fbob%2Fapp/manifests/evil", data=image_manifest(b"{}", []),
        headers={**_auth(c.alice_push), "Content-Type": OCI})),
    ("name trick: encoded slash to another repository", lambda c: c.client.post(
        "/v2/bob%2Fapp/blobs/uploads/", headers=_auth(c.alice_push))),
    ("name trick: trailing slash", lambda c: c.start_upload(c.alice_push, name="alice/app/")),
    ("name trick: double slash", lambda c: c.start_upload(c.alice_push, name="alice//app")),
    ("catalog without scope", lambda c: c.client.get("/v2/_catalog", headers=_auth(c.alice_push))),
    ("catalog with pull instead of *", lambda c: c.client.get("/v2/_catalog", headers=_auth(
        _ours(c, access=access("catalog", "pull", rtype="registry"))))),
    ("refresh token used as a bearer token", lambda c: c.get_manifest(c.refresh)),
    # --- malformed credentials
    ("basic credentials on a token-only registry", lambda c: c.start_upload(basic("admin", PASSWORDS["admin"]))),
    ("oversized Authorization header", lambda c: c.start_upload("Bearer " + "a" * 7500)),
    ("oversized token with dots", lambda c: c.start_upload("a" * 4000 + "." + "b" * 3500 + ".c")),
    ("Bearer without token", lambda c: c.start_upload("Bearer ")),
    ("two-part token", lambda c: c.start_upload("abc.def")),
    ("four-part token", lambda c: c.start_upload(c.alice_push + ".x")),
    ("header not JSON", lambda c: c.start_upload(b64url(b"{nope") + "." + c.alice_push.split(".", 1)[1])),
    ("header a JSON list", lambda c: c.start_upload(b64url(b"[1]") + "." + c.alice_push.split(".", 1)[1])),
    ("non-ASCII token", lambda c: c.client.post("/v2/alice/app/blobs/uploads/",
                                                headers={"Authorization": "Bearer \u00e9\u00e9.\u00e9.\u00e9"})),
    # --- the token server
    ("wrong password", lambda c: c.login(basic("alice", "wrong-password"))),
    ("unknown user", lambda c: c.login(basic("mallory", "anything"))),
    ("empty password", lambda c: c.login(basic("alice", ""))),
    ("password with the right 72-byte prefix", lambda c: c.login(basic("long", "p" * 72 + "extra"))),
    ("password with a NUL suffix", lambda c: c.login(basic("alice", PASSWORDS["alice"] + "\x00"))),
    ("malformed Basic header", lambda c: c.login("Basic !!notbase64!!")),
    ("account parameter for another user", lambda c: c.login(basic("alice", PASSWORDS["alice"]), account="admin")),
    ("refresh token as a password", lambda c: c.login(basic("alice", c.refresh))),
    ("OAuth2 password grant, wrong password", lambda c: c.client.post("/auth/token", data={
        "grant_type": "password", "client_id": "cli", "username": "admin", "password": "guess"})),
    ("refresh token from another client_id", lambda c: c.refresh_grant(c.refresh, client_id="other-client")),
    ("forged refresh token", lambda c: c.refresh_grant("rt1_" + "A" * 43)),
    ("access token as a refresh token", lambda c: c.refresh_grant(c.alice_push)),
    ("revoked refresh token replayed", lambda c: _revoked_replay(c)),
    ("expired refresh token replayed", lambda c: _expired_replay(c)),
    ("refresh token of a removed user", lambda c: _removed_user(c)),
    ("token server asked for scopes without rights, then used", lambda c: _no_rights(c)),
]


async def _revoked_replay(c: Ctx) -> Any:
    from registry.auth.refresh import RefreshStore
    RefreshStore(c.tmp / "refresh-tokens.json", 3600).revoke(account="alice")
    return await c.refresh_grant(c.refresh)


async def _expired_replay(c: Ctx) -> Any:
    import asyncio
    from registry.auth.refresh import RefreshStore
    store = c.tmp / "refresh-tokens.json"
    before = store.read_bytes()
    token = RefreshStore(store, lifetime=0.5).issue("alice", "cli", SERVICE)  # as if issued long ago
    await asyncio.sleep(0.6)
    r = await c.refresh_grant(token)
    store.write_bytes(before)  # the comparison below is about what the server wrote
    return r


async def _removed_user(c: Ctx) -> Any:
    users = c.tmp / "htpasswd"
    users.write_text("\n".join(line for line in users.read_text().splitlines() if not line.startswith("alice:")))
    import asyncio
    await asyncio.sleep(1.1)  # the file is checked for changes at most once a second
    return await c.refresh_grant(c.refresh)


async def _no_rights(c: Ctx) -> Any:
    tok = await c.token("alice", "repository:bob/app:pull,push,delete", "registry:catalog:*")
    assert jwt.decode(tok, options={"verify_signature": False})["access"] == []
    return await c.start_upload(tok, name="bob/app")


def test_table_is_large_enough():
    assert len(ATTACKS) >= 40
    assert len({name for name, _ in ATTACKS}) == len(ATTACKS)


@pytest.fixture
async def ctx(aiohttp_client, tmp_path) -> Ctx:
    pki = make_pki(tmp_path / "pki")
    make_users(tmp_path / "htpasswd")
    set_user(tmp_path / "htpasswd", "long", "p" * 72, rounds=4)
    config = registry_config(tmp_path / "data", auth=token_auth_block(rootcertbundle=str(pki.bundle_path)),
                             tokenserver=tokenserver_block(tmp_path, pki))
    client = await aiohttp_client(create_app(config))
    c = Ctx(client, pki, tmp_path, "", "", "", "")
    admin = await c.token("admin", "repository:alice/app:pull,push")
    layer, cfg = b"layer", b"{}"
    for blob in (layer, cfg):
        r = await client.post(f"/v2/alice/app/blobs/uploads/?digest={digest_of(blob)}", data=blob,
                              headers=_auth(admin))
        assert r.status == 201
    manifest = image_manifest(cfg, [layer])
    r = await client.put("/v2/alice/app/manifests/v1", data=manifest, headers={**_auth(admin), "Content-Type": OCI})
    assert r.status == 201
    c.manifest_digest = digest_of(manifest)
    r = await c.login(basic("alice", PASSWORDS["alice"]), offline_token="true", client_id="cli")
    c.refresh = (await r.json())["refresh_token"]
    c.alice_pull = await c.token("alice", "repository:alice/app:pull")
    c.alice_push = await c.token("alice", "repository:alice/app:pull,push")
    return c


@pytest.mark.parametrize("name,attack", ATTACKS, ids=[name for name, _ in ATTACKS])
async def test_attack_is_refused(ctx: Ctx, name: str, attack: Attack):
    data, store = ctx.tmp / "data", ctx.tmp / "refresh-tokens.json"
    before, store_before = tree(data), store.read_bytes()
    r = await attack(ctx)
    body = await r.read()
    assert r.status in (401, 403), (name, r.status, body[:300])
    if r.status == 401:
        assert "WWW-Authenticate" in r.headers
    assert tree(data) == before, f"{name}: storage changed"
    if "revoked" not in name:
        assert store.read_bytes() == store_before, f"{name}: refresh store changed"
    text = body.decode("utf-8", "replace")
    for secret in list(PASSWORDS.values()) + [ctx.refresh]:
        assert secret not in text
    # the legitimate holder is unaffected: alice's push token still works on her repository
    if "removed user" not in name:
        assert (await ctx.get_manifest(ctx.alice_push)).status == 200


async def test_nothing_is_logged_that_could_be_replayed(ctx: Ctx, caplog):
    caplog.set_level("DEBUG")
    await ctx.login(basic("alice", "wrong-password-xyz"))
    await ctx.start_upload(ctx.alice_pull)
    await ctx.refresh_grant(ctx.refresh, client_id="other")
    await ctx.login(basic("alice", PASSWORDS["alice"]), offline_token="true", client_id="cli")
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for secret in ("wrong-password-xyz", PASSWORDS["alice"], ctx.refresh, ctx.alice_pull,
                   ctx.alice_pull.split(".")[2]):
        assert secret not in logged


def test_unknown_user_costs_as_much_as_a_wrong_password(tmp_path):
    """Timing does not reveal which accounts exist: unknown users are checked against a dummy hash
    of the same bcrypt cost, and passwords are compared by bcrypt.checkpw (constant time)."""
    from registry.auth.htpasswd import Htpasswd
    path = tmp_path / "h"
    set_user(path, "alice", "pw", rounds=8)
    users = Htpasswd(path)

    def timed(user: str) -> float:
        start = time.perf_counter()
        for _ in range(5):
            assert not users.check(user, "wrong")
        return time.perf_counter() - start

    timed("alice")  # warm up
    ratio = timed("nobody") / timed("alice")
    assert 0.5 < ratio < 2.0, ratio


async def test_hmac_with_public_key_refused_even_when_hs256_is_allowed(aiohttp_client, tmp_path):
    """Second line of defence: with HS256 in signingalgorithms, an HMAC still needs an ``oct`` key."""
    pki = make_pki(tmp_path / "pki")
    config = registry_config(tmp_path / "data", auth=token_auth_block(
        rootcertbundle=str(pki.bundle_path), signingalgorithms=["HS256", "ES256"]))
    client = await aiohttp_client(create_app(config))
    c = Ctx(client, pki, tmp_path, "", "", "", "")
    for header in ({"kid": pki.kid}, {"x5c": _x5c(pki.cert)}, {"jwk": keys.public_jwk(pki.key.public_key())}):
        r = await c.start_upload(_hs256_with_public_key(c, header))
        assert r.status == 401 and 'error="invalid_token"' in r.headers["WWW-Authenticate"]
    assert tree(tmp_path / "data") == {}
