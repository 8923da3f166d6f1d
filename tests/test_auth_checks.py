"""Boundaries of the auth checks: scope grammar, token claims, key lookup, x5c decoding, key types.

Unit level (no registry, no token server) with real keys, certificates and signatures; each test
pins one rule of registry/auth/scope.py, bearer.py or keys.py so that a change to it fails here
(the `auth` target of `make mutation`).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID

from auth_support import b64url, chain_cert, forge
from registry.auth import keys
from registry.auth.bearer import InvalidToken, TokenVerifier, parse_jwks
from registry.auth.config import TokenConfig
from registry.auth.scope import (
    MAX_SCOPE_LENGTH,
    MAX_SCOPES,
    AccessSet,
    Scope,
    ScopeError,
    format_scopes,
    merge,
    parse_scope,
    parse_scopes,
    to_claim,
)

ISS, SVC, KID = "test-issuer", "test-service", "signer-1"


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _config(**kw: Any) -> TokenConfig:
    return TokenConfig(realm="https://auth.example/token", service=SVC, issuer=ISS, **kw)


def _verifier(key: Any, roots: list[Any] = (), **kw: Any) -> TokenVerifier:  # type: ignore[assignment]
    return TokenVerifier(_config(**kw), list(roots), {KID: key.public_key()})


def _token(key: Any, alg: str = "ES256", headers: dict[str, Any] | None = None, **claims: Any) -> str:
    now = int(time.time())
    body: dict[str, Any] = {"iss": ISS, "aud": SVC, "sub": "alice", "exp": now + 300, "nbf": now, "iat": now,
                            "access": [{"type": "repository", "name": "a/b", "actions": ["pull"]}]}
    for name, value in claims.items():
        if value is None:
            body.pop(name, None)
        else:
            body[name] = value
    return jwt.encode(body, key, algorithm=alg, headers={"kid": KID} if headers is None else headers)


async def _refused(verifier: TokenVerifier, token: str, reason: str) -> None:
    with pytest.raises(InvalidToken) as info:
        await verifier.verify(token)
    assert reason in str(info.value), str(info.value)


# --------------------------------------------------------------------------- scope grammar


def _scope_of_length(n: int) -> str:
    head = "repository:a:"
    actions = ("a" * 31 + ",") * (n // 32 + 1)
    actions = actions[: n - len(head)]
    if actions.endswith(","):
        actions = actions[:-1] + "b"  # the last action then has 32 characters, the most allowed
    return head + actions


def test_scope_length_limit_is_512() -> None:
    assert MAX_SCOPE_LENGTH == 512
    text = _scope_of_length(512)
    assert len(text) == 512 and parse_scope(text).name == "a"
    with pytest.raises(ScopeError, match="oversized"):
        parse_scope(_scope_of_length(513))
    for bad in (None, 7, b"repository:a:pull", ""):
        with pytest.raises(ScopeError, match="empty or oversized"):
            parse_scope(bad)  # type: ignore[arg-type]


def test_scope_colons() -> None:
    with pytest.raises(ScopeError, match="malformed scope"):
        parse_scope("repository:foo")  # one colon: no actions
    with pytest.raises(ScopeError, match="malformed scope"):
        parse_scope("repository")
    with pytest.raises(ScopeError, match="resource type"):
        parse_scope(":foo:pull")  # the type is empty (the first colon at 0)
    assert parse_scope("repository:a:pull") == Scope("repository", "a", ("pull",))


@pytest.mark.parametrize("bad", [
    "repository-x:foo:pull", "repository(a)b:foo:pull", "repository\n:foo:pull", "repository(A):foo:pull",
    "repository:foo:pull!", "repository:foo:pull\n", "repository:foo:" + "a" * 33, "repository:foo:1pull",
    "registry:catalog!:*", "registry:catalog\n:*", "registry:" + "c" * 129 + ":*", "registry:.catalog:*",
])
def test_scope_parts_match_their_whole_grammar(bad: str) -> None:
    with pytest.raises(ScopeError):
        parse_scope(bad)


def test_scope_longest_parts_are_accepted() -> None:
    assert parse_scope("repository:foo:" + "a" * 32).actions == ("a" * 32,)
    assert parse_scope("registry:" + "c" * 128 + ":*").name == "c" * 128
    assert parse_scope("repository(plugin):a/b:pull") == Scope("repository", "a/b", ("pull",), "plugin")
    assert str(Scope("repository", "a", ("pull", "push"))) == "repository:a:pull,push"
    assert str(Scope("repository", "a", ("pull",), "plugin")) == "repository(plugin):a:pull"
    assert Scope("repository", "a", ("pull",)).resource_class == ""


def test_repository_names_follow_the_repository_grammar() -> None:
    long_name = "a" * 200  # a valid repository name, longer than other resources' names may be
    assert parse_scope(f"repository:{long_name}:pull").name == long_name
    for bad in ("a..b", "a//b", "-a", "a/"):
        with pytest.raises(ScopeError, match="invalid repository name"):
            parse_scope(f"repository:{bad}:pull")
    assert parse_scope("registry:a..b:*").name == "a..b"  # other resources have their own, looser rule


def test_a_star_is_cut_down_to_the_known_actions_a_rule_allows() -> None:
    from registry.auth import acl
    from registry.auth.config import AclRule

    rule = AclRule(("alice",), False, "repository", "**", frozenset({"delete", "push", "pull", "sign"}))
    asked = [Scope("repository", "a", ("*",))]
    assert acl.grant([rule], "alice", asked) == [Scope("repository", "a", ("pull", "push", "delete"))]


def test_at_most_64_scopes() -> None:
    assert MAX_SCOPES == 64
    many = [f"repository:r{i}:pull" for i in range(65)]
    assert len(parse_scopes([" ".join(many[:64])])) == 64
    with pytest.raises(ScopeError, match="more than 64"):
        parse_scopes([" ".join(many)])
    with pytest.raises(ScopeError, match="more than 64"):
        parse_scopes(many[:40] + many[:25])  # counted before merging, across values


def test_parse_scopes_splits_and_merges() -> None:
    scopes = parse_scopes(["repository:a:pull  repository:b:push ", "repository(plugin):c:pull repository:c:push"])
    assert scopes == [Scope("repository", "a", ("pull",)), Scope("repository", "b", ("push",)),
                      Scope("repository", "c", ("pull", "push"), "plugin")]
    assert format_scopes(scopes) == "repository:a:pull repository:b:push repository(plugin):c:pull,push"
    assert parse_scopes([]) == [] and parse_scopes([""]) == []
    assert merge([Scope("repository", "a", ())]) == []


# --------------------------------------------------------------------------- granted access


def _claim(*entries: tuple[str, str, list[Any]]) -> list[dict[str, Any]]:
    return [{"type": t, "name": n, "actions": a} for t, n, a in entries]


def test_access_set_queries() -> None:
    grants = AccessSet.from_claim(_claim(("repository", "z", ["pull"]), ("repository", "a", ["*"]),
                                         ("repository", "m", ["push"]), ("registry", "catalog", ["*"]),
                                         ("repository", "z", ["delete"])), subject="bob")
    assert grants.subject == "bob"
    assert grants.names("repository", "pull") == ["z", "a"]
    assert grants.names("repository", "push") == ["a", "m"]
    assert grants.names("registry", "pull") == ["catalog"]
    assert grants.allows("repository", "z", "delete") and grants.allows("repository", "a", "anything")
    assert not grants.allows("repository", "m", "pull") and not grants.allows("repository", "nope", "pull")
    assert grants.allows_all([Scope("repository", "z", ("pull", "delete")), Scope("repository", "a", ("push",))])
    assert not grants.allows_all([Scope("repository", "z", ("pull", "push"))])
    assert grants.allows_all([])
    assert grants.scopes() == [Scope("registry", "catalog", ("*",)), Scope("repository", "a", ("*",)),
                               Scope("repository", "m", ("push",)), Scope("repository", "z", ("delete", "pull"))]
    assert not grants.empty


def test_access_set_empty() -> None:
    assert AccessSet().empty and AccessSet().subject == "" and AccessSet.from_claim(None).empty
    assert AccessSet.from_claim(None, subject="x").subject == "x"
    assert AccessSet.from_claim([]).subject == "" and AccessSet.from_claim(None).subject == ""
    nothing = AccessSet.from_claim(_claim(("repository", "a", [])))
    assert nothing.empty and not nothing.allows("repository", "a", "pull")
    assert not AccessSet([Scope("repository", "a", ("pull",))]).empty


def test_access_claim_size_limit() -> None:
    entries = [("repository", f"r{i}", ["pull"]) for i in range(MAX_SCOPES * 4 + 1)]
    assert len(AccessSet.from_claim(_claim(*entries[:256])).names("repository", "pull")) == 256
    with pytest.raises(ScopeError, match="must be a list"):
        AccessSet.from_claim(_claim(*entries))


@pytest.mark.parametrize("claim", [
    {"type": "repository", "name": "a", "actions": ["pull"]}, "repository:a:pull", [["repository", "a"]],
    [{"type": 1, "name": "a", "actions": ["pull"]}], [{"type": "Repository", "name": "a", "actions": ["pull"]}],
    [{"type": "repository-x", "name": "a", "actions": ["pull"]}], [{"type": "repository", "name": 1, "actions": []}],
    [{"name": "a", "actions": ["pull"]}], [{"type": "repository", "actions": ["pull"]}],
    [{"type": "repository", "name": "a"}], [{"type": "repository", "name": "a", "actions": "pull"}],
    [{"type": "repository", "name": "a", "actions": [1]}], [{"type": "repository", "name": "A", "actions": []}],
    [{"type": "registry", "name": "Catalog", "actions": ["*"]}],
])
def test_access_claim_refuses(claim: Any) -> None:
    with pytest.raises(ScopeError):
        AccessSet.from_claim(claim)


def test_access_claim_with_a_resource_class_and_round_trip() -> None:
    grants = AccessSet.from_claim(_claim(("repository(plugin)", "a/b", ["pull", "pull", "push"])))
    assert grants.allows("repository", "a/b", "push") and grants.names("repository", "pull") == ["a/b"]
    # the name is checked as the type's (without its class) name
    long_name = "a" * 200
    assert AccessSet.from_claim(_claim(("repository(plugin)", long_name, ["pull"]))).allows(
        "repository", long_name, "pull")
    with pytest.raises(ScopeError, match="invalid repository name"):
        AccessSet.from_claim(_claim(("repository(plugin)", "a..b", ["pull"])))
    scopes = [Scope("repository", "a/b", ("pull", "push")), Scope("registry", "catalog", ("*",))]
    assert to_claim(scopes) == [{"type": "repository", "name": "a/b", "actions": ["pull", "push"]},
                                {"type": "registry", "name": "catalog", "actions": ["*"]}]
    assert AccessSet.from_claim(to_claim(scopes)).scopes() == sorted(scopes, key=lambda s: (s.type, s.name))


# --------------------------------------------------------------------------- token claims


async def test_a_valid_token_grants_its_access(key: Any) -> None:
    grants = await _verifier(key).verify(_token(key))
    assert grants.subject == "alice" and grants.allows("repository", "a/b", "pull")
    assert not grants.allows("repository", "a/b", "push")


async def test_subject_is_cut_to_256_and_may_be_absent(key: Any) -> None:
    v = _verifier(key)
    assert (await v.verify(_token(key, sub="s" * 300))).subject == "s" * 256
    assert (await v.verify(_token(key, sub=None))).subject == ""
    assert (await v.verify(_token(key, access=None))).empty


async def test_time_claims_have_60_seconds_of_leeway(key: Any) -> None:
    v = _verifier(key)
    now = int(time.time())
    await v.verify(_token(key, exp=now - 30))
    await _refused(v, _token(key, exp=now - 60), "ExpiredSignatureError")  # exp <= now - 60
    await v.verify(_token(key, nbf=now + 30))
    await v.verify(_token(key, nbf=now + 59))
    await _refused(v, _token(key, nbf=now + 61), "ImmatureSignatureError")
    await v.verify(_token(key, iat=now + 30))
    await _refused(v, _token(key, iat=now + 61), "ImmatureSignatureError")
    await _refused(v, _token(key, exp=None), "MissingRequiredClaimError")
    await _refused(v, _token(key, exp="soon"), "token rejected")
    await _refused(v, _token(key, nbf="later"), "token rejected")
    await _refused(v, _token(key, iat="then"), "token rejected")


async def test_issuer_and_audience(key: Any) -> None:
    v = _verifier(key)
    await v.verify(_token(key, aud=["other", SVC]))
    await _refused(v, _token(key, aud=["other"]), "InvalidAudienceError")
    await _refused(v, _token(key, aud="other"), "InvalidAudienceError")
    await _refused(v, _token(key, aud=5), "InvalidAudienceError")
    await _refused(v, _token(key, aud=None), "MissingRequiredClaimError")
    await _refused(v, _token(key, iss="someone-else"), "InvalidIssuerError")
    await _refused(v, _token(key, iss=None), "MissingRequiredClaimError")


async def test_refresh_tokens_and_bad_access_claims_are_refused(key: Any) -> None:
    v = _verifier(key)
    await _refused(v, _token(key, token_use="refresh"), "refresh token")
    assert (await v.verify(_token(key, token_use="access"))).allows("repository", "a/b", "pull")
    await _refused(v, _token(key, access={"type": "repository"}), "malformed access claim")
    await _refused(v, _token(key, access=[{"type": "repository", "name": "../x", "actions": ["pull"]}]),
                   "malformed access claim")


# --------------------------------------------------------------------------- token shape


async def test_token_length_limit_is_7168(key: Any) -> None:
    v = _verifier(key)
    header = b64url(json.dumps({"alg": "ES256", "kid": KID}).encode())
    payload = b64url(json.dumps({"iss": ISS, "aud": SVC, "exp": int(time.time()) + 60}).encode())

    def sized(n: int) -> str:
        head = f"{header}.{payload}."
        return head + "A" * (n - len(head))

    await _refused(v, sized(7168), "token rejected")  # checked (the signature is wrong), not refused unread
    await _refused(v, sized(7169), "malformed token")


@pytest.mark.parametrize("text", ["a.b", "a.b.c.d", "a.b.c!", "a.b.c\n", "a.b!.c", "!a.b.c", "", "a..c"])
async def test_token_shape(key: Any, text: str) -> None:
    await _refused(_verifier(key), text, "malformed token")


async def test_a_trailing_newline_is_not_the_same_token(key: Any) -> None:
    v = _verifier(key)
    token = _token(key)
    await v.verify(token)
    await _refused(v, token + "\n", "malformed token")


@pytest.mark.parametrize("header", [b"not json", b"[1, 2]", b'"ES256"', b"\xff\xfe{}"])
async def test_token_header_must_be_a_json_object(key: Any, header: bytes) -> None:
    token = f"{b64url(header)}.{b64url(b'{}')}.{b64url(b'sig')}"
    await _refused(_verifier(key), token, "malformed token header")


@pytest.mark.parametrize("kid_length", [1, 2, 3, 4, 5, 6])
async def test_headers_of_every_padding_length_decode(key: Any, kid_length: int) -> None:
    kid = "k" * kid_length
    v = TokenVerifier(_config(), [], {kid: key.public_key()})
    assert (await v.verify(_token(key, headers={"kid": kid}))).subject == "alice"


# --------------------------------------------------------------------------- algorithms and key types


async def test_algorithm_must_be_allowed(key: Any, rsa_key: Any) -> None:
    v = _verifier(key, signingalgorithms=("ES256",))
    await v.verify(_token(key))
    await _refused(TokenVerifier(_config(signingalgorithms=("ES256",)), [], {KID: rsa_key.public_key()}),
                   _token(rsa_key, alg="RS256"), "'RS256' not allowed")
    claims = {"iss": ISS, "aud": SVC, "exp": int(time.time()) + 60}
    await _refused(v, forge({"alg": 5, "kid": KID}, claims), "not allowed")
    await _refused(v, forge({"kid": KID}, claims), "not allowed")
    # "none" is refused even when a configuration names it
    lax = _verifier(key, signingalgorithms=("ES256", "none"))
    await _refused(lax, forge({"alg": "none", "kid": KID}, claims), "'none' not allowed")
    await _refused(_verifier(key, signingalgorithms=("ES256", "NONE")), forge({"alg": "NONE", "kid": KID}, claims),
                   "'NONE' not allowed")
    await _refused(v, _token(key, headers={"kid": KID, "crit": ["exp"]}), "critical header")


async def test_algorithm_must_fit_the_key(key: Any, rsa_key: Any) -> None:
    everything = ("ES256", "ES384", "RS256", "HS256", "EdDSA")
    claims = {"iss": ISS, "aud": SVC, "exp": int(time.time()) + 60}
    v = _verifier(key, signingalgorithms=everything)
    await v.verify(_token(key))
    await _refused(v, forge({"alg": "RS256", "kid": KID}, claims, b"x" * 256), "does not fit the signing key")
    await _refused(v, forge({"alg": "ES384", "kid": KID}, claims, b"x" * 96), "does not fit the signing key")
    # the classic confusion: HMAC keyed with the public key's PEM
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    signing_input = f"{b64url(json.dumps({'alg': 'HS256', 'kid': KID}).encode())}.{b64url(json.dumps(claims).encode())}"
    forged = f"{signing_input}.{b64url(hmac.new(pem, signing_input.encode(), hashlib.sha256).digest())}"
    await _refused(v, forged, "does not fit the signing key")
    rv = TokenVerifier(_config(signingalgorithms=everything), [], {KID: rsa_key.public_key()})
    assert (await rv.verify(_token(rsa_key, alg="RS256"))).subject == "alice"
    await _refused(rv, forge({"alg": "ES256", "kid": KID}, claims, b"x" * 64), "does not fit the signing key")


async def test_a_tampered_signature_is_refused(key: Any, other_key: Any) -> None:
    v = _verifier(key)
    head, body, _ = _token(key).split(".")
    _, _, other_sig = _token(other_key).split(".")
    await _refused(v, f"{head}.{body}.{other_sig}", "InvalidSignatureError")
    await _refused(v, _token(other_key), "InvalidSignatureError")


def test_algorithms_of_each_key_type(key: Any, rsa_key: Any) -> None:
    assert keys.algorithms_for(rsa_key.public_key()) == ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
    assert keys.algorithms_for(key.public_key()) == ("ES256",)
    assert keys.algorithms_for(ec.generate_private_key(ec.SECP384R1()).public_key()) == ("ES384",)
    assert keys.algorithms_for(ec.generate_private_key(ec.SECP521R1()).public_key()) == ("ES512",)
    assert keys.algorithms_for(ec.generate_private_key(ec.SECP256K1()).public_key()) == ()
    assert keys.algorithms_for(ed25519.Ed25519PrivateKey.generate().public_key()) == ("EdDSA",)
    assert keys.algorithms_for(b"secret") == ("HS256", "HS384", "HS512")
    assert keys.algorithms_for(ed448.Ed448PrivateKey.generate().public_key()) == ()
    assert keys.algorithms_for("secret") == ()  # type: ignore[arg-type]


# --------------------------------------------------------------------------- key lookup


def _self_signed(key: Any, name: str = "token-signer", **kw: Any) -> x509.Certificate:
    return chain_cert(key, name, None, None, **kw)


async def test_x5c_header_with_a_bundle(key: Any, other_key: Any) -> None:
    cert = _self_signed(key)
    v = TokenVerifier(_config(), [cert], {})
    x5c = {"x5c": [keys.cert_der_b64(cert)]}
    assert (await v.verify(_token(key, headers=x5c))).subject == "alice"
    stranger = {"x5c": [keys.cert_der_b64(_self_signed(other_key))]}
    await _refused(v, _token(other_key, headers=stranger), "not rooted")
    await _refused(v, _token(key, headers={"x5c": ["not base64!"]}), "not a DER certificate")
    await _refused(v, _token(key, headers={"x5c": "x"}), "1 to 5")
    # without a bundle an x5c proves nothing: the kid decides
    no_bundle = _verifier(key)
    await _refused(no_bundle, _token(key, headers={"x5c": x5c["x5c"]}), "names no key")
    assert (await no_bundle.verify(_token(key, headers={"x5c": ["junk"], "kid": KID}))).subject == "alice"


async def test_jwk_header(key: Any, other_key: Any) -> None:
    trusted = {keys.thumbprint(key.public_key()): key.public_key()}
    v = TokenVerifier(_config(), [], trusted)
    jwk = keys.public_jwk(key.public_key())
    assert (await v.verify(_token(key, headers={"jwk": jwk}))).subject == "alice"
    # the attacker's own key in the header is not trusted; the trusted key in it does not verify theirs
    await _refused(v, _token(other_key, headers={"jwk": keys.public_jwk(other_key.public_key())}),
                   "untrusted embedded jwk")
    await _refused(v, _token(other_key, headers={"jwk": jwk}), "InvalidSignatureError")
    await _refused(v, _token(key, headers={"jwk": "not an object"}), "malformed jwk header")
    await _refused(v, _token(key, headers={"jwk": {"kty": "bogus"}}), "unusable jwk header")
    await _refused(v, _token(key, headers={"jwk": {"kty": "oct", "k": "c2VjcmV0"}}), "unusable jwk header")
    cert = _self_signed(key)
    with_bundle = TokenVerifier(_config(), [cert], {})
    in_jwk = {"jwk": {"x5c": [keys.cert_der_b64(cert)]}}
    assert (await with_bundle.verify(_token(key, headers=in_jwk))).subject == "alice"
    await _refused(with_bundle, _token(key, headers={"jwk": {"x5c": ["junk"]}}), "not a DER certificate")
    await _refused(v, _token(key, headers=in_jwk), "unusable jwk header")  # no bundle: not a usable jwk


async def test_kid_header(key: Any) -> None:
    long_ok, too_long = "k" * 256, "k" * 257
    v = TokenVerifier(_config(), [], {long_ok: key.public_key(), too_long: key.public_key()})
    assert (await v.verify(_token(key, headers={"kid": long_ok}))).subject == "alice"
    await _refused(v, _token(key, headers={"kid": too_long}), "names no key")
    await _refused(v, _token(key, headers={"kid": ""}), "names no key")
    await _refused(v, forge({"alg": "ES256", "kid": 5}, {}), "names no key")
    await _refused(v, _token(key, headers={}), "names no key")
    await _refused(v, _token(key, headers={"kid": "unknown"}), "unknown key id")


async def test_bundle_certificates_are_trusted_by_kid(key: Any) -> None:
    cert = _self_signed(key)
    v = TokenVerifier(_config(), [cert], {})
    for kid in (keys.thumbprint(key.public_key()), keys.libtrust_key_id(key.public_key())):
        assert (await v.verify(_token(key, headers={"kid": kid}))).subject == "alice"


async def test_a_jwks_url_is_fetched_only_for_an_unknown_kid(aiohttp_server: Any, key: Any, other_key: Any) -> None:
    fetched = []

    async def jwks(request: web.Request) -> web.Response:
        fetched.append(request.path)
        return web.json_response({"keys": [dict(keys.public_jwk(other_key.public_key()), kid="remote")]})

    app = web.Application()
    app.router.add_get("/jwks.json", jwks)
    server = await aiohttp_server(app)
    v = TokenVerifier(_config(jwks=str(server.make_url("/jwks.json"))), [], {KID: key.public_key()})
    assert (await v.verify(_token(key))).subject == "alice"
    assert fetched == []  # a known kid needs no fetch
    assert (await v.verify(_token(other_key, headers={"kid": "remote"}))).subject == "alice"
    assert fetched == ["/jwks.json"]
    await _refused(v, _token(other_key, headers={"kid": "gone"}), "unknown key id")
    assert fetched == ["/jwks.json"]  # within 30 s of the last fetch: not fetched again


# --------------------------------------------------------------------------- JWKS documents


def test_parse_jwks(key: Any) -> None:
    public = keys.public_jwk(key.public_key())
    parsed = parse_jwks({"keys": [dict(public, kid="a")]}, allow_hmac=False)
    assert list(parsed) == ["a"] and keys.same_key(parsed["a"], key.public_key())
    oct_key = {"kty": "oct", "kid": "h", "k": b64url(b"0123456789abcdef0123456789abcdef")}
    assert parse_jwks({"keys": [oct_key]}, allow_hmac=False) == {}
    assert parse_jwks({"keys": [oct_key]}, allow_hmac=True) == {"h": b"0123456789abcdef0123456789abcdef"}
    assert list(parse_jwks({"keys": [oct_key, dict(public, kid="after")]}, allow_hmac=False)) == ["after"]
    nums = key.private_numbers()
    private = dict(public, kid="p", d=b64url(nums.private_value.to_bytes(32, "big")))
    from_private = parse_jwks({"keys": [private]}, allow_hmac=False)["p"]
    assert isinstance(from_private, ec.EllipticCurvePublicKey) and keys.same_key(from_private, key.public_key())


@pytest.mark.parametrize("document, message", [
    ([], "must be an object"), ({"keys": {}}, "must be an object"), ({}, "must be an object"),
    ({"keys": ["x"]}, "needs a 'kid'"), ({"keys": [{"kty": "EC"}]}, "needs a 'kid'"),
    ({"keys": [{"kty": "EC", "kid": 5}]}, "needs a 'kid'"), ({"keys": [{"kty": "EC", "kid": ""}]}, "needs a 'kid'"),
    ({"keys": [{"kty": "EC", "kid": "k", "crv": "P-256", "x": "AA"}]}, "JWKS key k"),
    ({"keys": [{"kty": "nope", "kid": "k"}]}, "JWKS key k"),
])
def test_parse_jwks_refuses(document: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_jwks(document, allow_hmac=True)


# --------------------------------------------------------------------------- x5c chains


def _der(cert: x509.Certificate) -> str:
    return keys.cert_der_b64(cert)


def test_x5c_entries_must_be_strict_base64_der(key: Any) -> None:
    cert = _self_signed(key)
    roots = [cert]
    good = _der(cert)
    assert keys.same_key(keys.verify_chain([good], roots), key.public_key())
    # base64 with anything outside the alphabet is refused, even where a lax decoder would skip it
    for bad in (good[:40] + "\n" + good[40:], good[:40] + "!" + good[40:], good + "*", good.replace("+", "-")):
        if bad != good:
            with pytest.raises(keys.UnusableKey, match="not a DER certificate"):
                keys.verify_chain([bad], roots)
    with pytest.raises(keys.UnusableKey, match="not a DER certificate"):
        keys.verify_chain([good[:-4]], roots)  # truncated
    with pytest.raises(keys.UnusableKey, match="not a DER certificate"):
        keys.verify_chain(["A" * 16384], roots)  # the longest entry read: decoded, not a certificate
    with pytest.raises(keys.UnusableKey, match="malformed x5c entry"):
        keys.verify_chain(["A" * 16385], roots)
    for entry in (5, None, [good], good.encode()):
        with pytest.raises(keys.UnusableKey, match="malformed x5c entry"):
            keys.verify_chain([entry], roots)


def _ladder(depth: int) -> tuple[list[x509.Certificate], x509.Certificate, Any]:
    """leaf, then ``depth`` intermediates, issued from a root (returned apart, for the bundle)."""
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = chain_cert(root_key, "root", None, None, ca=True)
    issuer_key, issuer = root_key, root
    chain = []
    for i in range(depth):
        mid_key = ec.generate_private_key(ec.SECP256R1())
        mid = chain_cert(mid_key, f"mid{i}", issuer_key, issuer, ca=True)
        chain.insert(0, mid)
        issuer_key, issuer = mid_key, mid
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    return [chain_cert(leaf_key, "leaf", issuer_key, issuer)] + chain, root, leaf_key


def test_x5c_holds_1_to_5_certificates() -> None:
    five, root, leaf_key = _ladder(4)
    assert len(five) == 5
    assert keys.same_key(keys.verify_chain([_der(c) for c in five], [root]), leaf_key.public_key())
    six, root6, _ = _ladder(5)
    with pytest.raises(keys.UnusableKey, match="1 to 5"):
        keys.verify_chain([_der(c) for c in six], [root6])
    for bad in ([], "x", None, tuple(_der(c) for c in five)):
        with pytest.raises(keys.UnusableKey, match="1 to 5"):
            keys.verify_chain(bad, [root])  # type: ignore[arg-type]
    with pytest.raises(keys.UnusableKey, match="no root certificates"):
        keys.verify_chain([_der(five[0])], [])


def test_bundled_certificate_validity_is_inclusive(key: Any) -> None:
    cert = _self_signed(key)
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    for now in (start, end, start + (end - start) / 2):
        assert keys.same_key(keys.verify_chain([_der(cert)], [cert], now=now), key.public_key())
    second = dt.timedelta(seconds=1)
    for now in (start - second, end + second):
        with pytest.raises(keys.UnusableKey, match="expired or not yet valid"):
            keys.verify_chain([_der(cert)], [cert], now=now)


def test_bundled_certificate_key_usage(key: Any) -> None:
    bare = _self_signed(key, key_usage=None)  # no keyUsage at all: may sign
    assert keys.same_key(keys.verify_chain([_der(bare)], [bare]), key.public_key())
    encipher = _self_signed(key, key_usage="key_encipherment")
    with pytest.raises(keys.UnusableKey, match="digitalSignature"):
        keys.verify_chain([_der(encipher)], [encipher])


def test_chained_leaf_without_key_usage_and_expired_chains(key: Any) -> None:
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = chain_cert(root_key, "root", None, None, ca=True)
    leaf = chain_cert(key, "leaf", root_key, root, key_usage=None)
    assert keys.same_key(keys.verify_chain([_der(leaf)], [root]), key.public_key())
    later = leaf.not_valid_after_utc + dt.timedelta(days=1)
    with pytest.raises(keys.UnusableKey, match="expired or not yet valid"):
        keys.verify_chain([_der(leaf)], [root], now=later)
    with pytest.raises(keys.UnusableKey, match="not rooted"):
        keys.verify_chain([_der(leaf)], [_self_signed(key)])


def test_leaf_key_type_must_be_usable() -> None:
    ed = ed448.Ed448PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ed448")])
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(ed.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1)).sign(ed, None))
    with pytest.raises(keys.UnusableKey, match="unsupported key type"):
        keys.verify_chain([_der(cert)], [cert])
    edk = ed25519.Ed25519PrivateKey.generate()
    ok = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(edk.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now)
          .not_valid_after(now + dt.timedelta(days=1)).sign(edk, None))
    assert keys.same_key(keys.verify_chain([_der(ok)], [ok]), edk.public_key())
    assert base64.b64decode(_der(ok), validate=True) == ok.public_bytes(serialization.Encoding.DER)
