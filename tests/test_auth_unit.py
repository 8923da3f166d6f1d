"""Unit tests of the auth pieces: scope grammar, ACL grants, htpasswd, keys and chains, config."""

from __future__ import annotations

import base64
import datetime as dt
import time

import bcrypt
import pytest

from auth_support import RULES, chain_cert, make_pki, make_users
from registry.auth import acl, keys
from registry.auth.config import AuthConfig, TokenServerConfig
from registry.auth.htpasswd import Htpasswd, HtpasswdError, parse_basic, read_entries, set_user
from registry.auth.ratelimit import LoginLimiter, MemoryFailureStore
from registry.auth.refresh import RefreshStore
from registry.auth.scope import AccessSet, Scope, ScopeError, format_scopes, parse_scope, parse_scopes
from registry.config import ConfigError


# --------------------------------------------------------------------------- scopes

@pytest.mark.parametrize("text,expected", [
    ("repository:foo:pull", Scope("repository", "foo", ("pull",))),
    ("repository:a/b/c:pull,push", Scope("repository", "a/b/c", ("pull", "push"))),
    ("repository:foo:*", Scope("repository", "foo", ("*",))),
    ("registry:catalog:*", Scope("registry", "catalog", ("*",))),
    ("repository(plugin):foo:pull", Scope("repository", "foo", ("pull",), "plugin")),
    ("repository:foo:pull,pull", Scope("repository", "foo", ("pull",))),
])
def test_parse_scope(text, expected):
    assert parse_scope(text) == expected
    assert parse_scope(str(expected)) == expected


def test_name_with_host_port_parses_from_both_ends():
    # the grammar allows host:port in a name; our repository names never hold ':' so it is refused,
    # but the parse must cut at the first and last ':' (not split on every ':')
    with pytest.raises(ScopeError, match="invalid repository name 'localhost:5000/foo'"):
        parse_scope("repository:localhost:5000/foo:pull")


@pytest.mark.parametrize("bad", [
    "", "repository", "repository:foo", "repository::pull", "Repository:foo:pull", "repository:Foo:pull",
    "repository:foo/:pull", "repository:foo/../bar:pull", "repository:foo%2Fbar:pull", "repository:/foo:pull",
    "repository:foo//bar:pull", "repository:foo:PULL", "repository:foo:pull;push", "repository:foo:",
    "repository:foo: pull", "repository:" + "a" * 300 + ":pull", "registry:Catalog:*", "re po:foo:pull",
])
def test_parse_scope_rejects(bad):
    with pytest.raises(ScopeError):
        parse_scope(bad)


def test_parse_scopes_merges_and_splits_spaces():
    scopes = parse_scopes(["repository:a:pull repository:b:push", "repository:a:push"])
    assert scopes == [Scope("repository", "a", ("pull", "push")), Scope("repository", "b", ("push",))]
    assert format_scopes(scopes) == "repository:a:pull,push repository:b:push"
    with pytest.raises(ScopeError):
        parse_scopes([" ".join(f"repository:r{i}:pull" for i in range(100))])


def test_access_set():
    grants = AccessSet.from_claim([{"type": "repository", "name": "a", "actions": ["pull"]},
                                   {"type": "repository", "name": "b", "actions": ["*"]}])
    assert grants.allows("repository", "a", "pull")
    assert not grants.allows("repository", "a", "push")
    assert grants.allows("repository", "b", "delete")
    assert not grants.allows("repository", "A", "pull")
    assert not grants.allows("registry", "a", "pull")
    for bad in ("x", [1], [{"type": "repository", "name": "a", "actions": "pull"}],
                [{"type": "repository", "name": "../a", "actions": ["pull"]}],
                [{"type": "repository", "name": "a/", "actions": ["pull"]}]):
        with pytest.raises(ScopeError):
            AccessSet.from_claim(bad)


# --------------------------------------------------------------------------- ACL

def _rules():
    return TokenServerConfig.from_dict({"issuer": "i", "service": "s", "users": "u", "key": "k", "rules": RULES}).rules


@pytest.mark.parametrize("account,asked,granted", [
    ("alice", "repository:alice/app:pull,push,delete", "repository:alice/app:pull,push,delete"),
    ("alice", "repository:alice/deep/app:pull", "repository:alice/deep/app:pull"),
    ("alice", "repository:bob/app:pull,push", ""),                       # another's namespace
    ("alice", "repository:alice:pull", ""),                              # the namespace itself is not under it
    ("alice", "repository:alicex/app:pull", ""),                          # prefix is not a namespace
    ("alice", "repository:shared/x:pull,push,delete", "repository:shared/x:pull,push"),  # partial grant
    ("alice", "repository:alice/app:*", "repository:alice/app:pull,push,delete"),  # * cut to allowed actions
    ("admin", "repository:anything/at/all:*", "repository:anything/at/all:*"),
    ("admin", "registry:catalog:*", "registry:catalog:*"),
    ("alice", "registry:catalog:*", ""),
    ("reader", "repository:alice/app:pull,push", "repository:alice/app:pull"),  # first match wins
    (None, "repository:public/x:pull,push", "repository:public/x:pull"),
    (None, "repository:alice/x:pull", ""),                               # ${account} never matches anonymous
    ("alice", "repository:public/x:pull repository:alice/y:push", "repository:public/x:pull repository:alice/y:push"),
])
def test_acl_grants_intersection(account, asked, granted):
    assert format_scopes(acl.grant(_rules(), account, parse_scopes([asked]))) == granted


def test_acl_account_with_glob_characters_is_literal():
    rules = _rules()
    assert acl.grant(rules, "a*", parse_scopes(["repository:ab/x:pull"])) == []
    assert acl.name_matches("team/*", "team/a", None) and not acl.name_matches("team/*", "team/a/b", None)
    assert acl.name_matches("team/**", "team/a/b", None)


# --------------------------------------------------------------------------- htpasswd

def test_htpasswd_check_and_reload(tmp_path):
    path = make_users(tmp_path / "htpasswd", {"alice": "pw-1"})
    users = Htpasswd(path, check_interval=0)
    assert users.check("alice", "pw-1")
    assert not users.check("alice", "pw-2")
    assert not users.check("nobody", "pw-1")
    set_user(path, "alice", "pw-2")
    set_user(path, "carol", "pw-3")
    assert not users.check("alice", "pw-1")  # the cache is dropped when the file changes
    assert users.check("alice", "pw-2") and users.check("carol", "pw-3")
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_htpasswd_accepts_2y_and_refuses_other_hashes(tmp_path):
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode().replace("$2b$", "$2y$", 1)
    path = tmp_path / "h"
    path.write_text(f"# comment\nu:{hashed}\n")
    assert Htpasswd(path).check("u", "pw")
    path.write_text("u:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n")
    with pytest.raises(HtpasswdError, match="only bcrypt"):
        read_entries(path)
    with pytest.raises(HtpasswdError, match="does not exist"):
        Htpasswd(tmp_path / "missing")


def test_htpasswd_long_password_refused(tmp_path):
    path = make_users(tmp_path / "h", {"u": "x" * 72})
    users = Htpasswd(path)
    assert users.check("u", "x" * 72)
    assert not users.check("u", "x" * 73)  # bcrypt would truncate; we refuse
    with pytest.raises(HtpasswdError):
        set_user(path, "u", "y" * 73)


@pytest.mark.parametrize("header,expected", [
    ("Basic " + base64.b64encode(b"alice:pw:with:colons").decode(), ("alice", "pw:with:colons")),
    ("basic " + base64.b64encode(b"alice:").decode(), ("alice", "")),
    ("Basic !!!", None), ("Bearer abc", None), ("Basic " + base64.b64encode(b"nocolon").decode(), None),
    ("Basic " + base64.b64encode(b":pw").decode(), None), ("Basic " + "A" * 2000, None),
    ("Basic " + base64.b64encode(b"\xff\xfe:pw").decode(), None),
])
def test_parse_basic(header, expected):
    assert parse_basic(header) == expected


# --------------------------------------------------------------------------- keys and chains

def test_thumbprint_matches_rfc7638_example():
    # RFC 7638 section 3.1 example key and thumbprint
    n = ("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3o"
         "knjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHz"
         "u6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8"
         "awapJzKnqDKgw")
    from cryptography.hazmat.primitives.asymmetric import rsa

    def b64int(s):
        return int.from_bytes(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)), "big")

    key = rsa.RSAPublicNumbers(b64int("AQAB"), b64int(n)).public_key()
    assert keys.thumbprint(key) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_libtrust_key_id_shape():
    kid = keys.libtrust_key_id(keys.generate_private_key("ec").public_key())
    assert len(kid.split(":")) == 12 and all(len(p) == 4 for p in kid.split(":"))


def test_algorithms_fit_key_types():
    assert keys.algorithms_for(keys.generate_private_key("ec").public_key()) == ("ES256",)
    assert "HS256" not in keys.algorithms_for(keys.generate_private_key("rsa").public_key())
    assert keys.algorithms_for(b"secret") == keys.HMAC_ALGORITHMS


def test_verify_chain(tmp_path):
    pki = make_pki(tmp_path)
    roots = keys.load_certificates(pki.bundle_path)
    der = keys.cert_der_b64
    # the self-signed token certificate is itself in the bundle
    assert keys.same_key(keys.verify_chain([der(pki.cert)], roots), pki.key.public_key())
    # leaf <- intermediate <- root CA in the bundle
    inter_key = keys.generate_private_key("ec")
    inter = keys.make_certificate(inter_key, "intermediate", pki.ca_key, pki.ca_cert, ca=True)
    leaf_key = keys.generate_private_key("ec")
    leaf = keys.make_certificate(leaf_key, "leaf", inter_key, inter)
    assert keys.same_key(keys.verify_chain([der(leaf), der(inter)], roots), leaf_key.public_key())
    with pytest.raises(keys.UnusableKey, match="not rooted"):
        keys.verify_chain([der(leaf)], roots)  # intermediate missing
    with pytest.raises(keys.UnusableKey, match="not rooted"):
        keys.verify_chain([der(pki.attacker_cert)], roots)  # same subject, other key
    # a non-CA certificate cannot issue
    fake_leaf = keys.make_certificate(leaf_key, "leaf", pki.key, pki.cert)
    with pytest.raises(keys.UnusableKey, match="not rooted"):
        keys.verify_chain([der(fake_leaf)], roots)
    old = keys.make_certificate(leaf_key, "old", pki.ca_key, pki.ca_cert, days=1,
                                not_before=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=3))
    with pytest.raises(keys.UnusableKey, match="expired"):
        keys.verify_chain([der(old)], roots)
    for bad in ([], ["not base64!"], [base64.b64encode(b"junk").decode()], "x", [der(leaf)] * 6):
        with pytest.raises(keys.UnusableKey):
            keys.verify_chain(bad, roots)


def _webpki_case(kind: str):
    """(x5c chain, bundle) for one rule of the chain verifier; ``ok-*`` kinds must be accepted."""
    from cryptography import x509
    from cryptography.x509.oid import ObjectIdentifier

    root_key, mid_key, leaf_key = (keys.generate_private_key("ec") for _ in range(3))
    root = chain_cert(root_key, "root", None, None, ca=True)
    leaf_of = lambda issuer_key, issuer, **kw: chain_cert(leaf_key, "token-signer", issuer_key, issuer, **kw)  # noqa: E731
    if kind == "ok-leaf-under-root":
        return [leaf_of(root_key, root)], [root]
    if kind == "ok-ca-without-keyusage":  # `openssl req -x509` makes CAs like this
        bare = chain_cert(root_key, "root", None, None, ca=True, key_usage=None)
        return [leaf_of(root_key, bare)], [bare]
    if kind == "ok-path-length-1":
        root1 = chain_cert(root_key, "root", None, None, ca=True, path_length=1)
        mid = chain_cert(mid_key, "mid", root_key, root1, ca=True)
        return [leaf_of(mid_key, mid), mid], [root1]
    if kind == "ok-self-signed-ca-in-bundle":  # the token certificate itself, marked CA
        own = chain_cert(leaf_key, "token-signer", None, None, ca=True, key_usage="digital_signature,key_cert_sign")
        return [own], [own]
    if kind == "ca-keyusage-without-keycertsign":
        mid = chain_cert(mid_key, "mid", root_key, root, ca=True, key_usage="digital_signature")
        return [leaf_of(mid_key, mid), mid], [root]
    if kind == "issuer-not-a-ca":
        mid = chain_cert(mid_key, "mid", root_key, root, ca=False, key_usage="key_cert_sign")
        return [leaf_of(mid_key, mid), mid], [root]
    if kind == "issuer-without-basicconstraints":
        mid = chain_cert(mid_key, "mid", root_key, root, basic_constraints=False, key_usage="key_cert_sign")
        return [leaf_of(mid_key, mid), mid], [root]
    if kind == "path-length":
        root0 = chain_cert(root_key, "root", None, None, ca=True, path_length=0)
        mid = chain_cert(mid_key, "mid", root_key, root0, ca=True)
        return [leaf_of(mid_key, mid), mid], [root0]
    if kind == "leaf-is-a-ca":
        return [leaf_of(root_key, root, ca=True)], [root]
    if kind == "leaf-keyusage-without-digitalsignature":
        return [leaf_of(root_key, root, key_usage="key_encipherment")], [root]
    if kind == "name-constraints":
        limited = chain_cert(root_key, "root", None, None, ca=True, extensions=[
            (x509.NameConstraints([x509.DNSName("example.com")], None), True)])
        return [leaf_of(root_key, limited, extensions=[
            (x509.SubjectAlternativeName([x509.DNSName("tokens.evil.test")]), False)])], [limited]
    if kind == "unknown-critical-extension":
        return [leaf_of(root_key, root, extensions=[
            (x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00"), True)])], [root]
    if kind == "self-signed-in-bundle-without-digitalsignature":
        own = chain_cert(leaf_key, "token-signer", None, None, key_usage="key_encipherment")
        return [own], [own]
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["ok-leaf-under-root", "ok-ca-without-keyusage", "ok-path-length-1",
                                  "ok-self-signed-ca-in-bundle"])
def test_verify_chain_accepts(kind):
    chain, bundle = _webpki_case(kind)
    assert keys.same_key(keys.verify_chain([keys.cert_der_b64(c) for c in chain], bundle), chain[0].public_key())


@pytest.mark.parametrize("kind, reason", [
    # the first three the hand-written check it replaced refused too; it accepted all the others
    ("ca-keyusage-without-keycertsign", "keyCertSign"),
    ("issuer-not-a-ca", "cA must be asserted"),
    ("issuer-without-basicconstraints", "basicConstraints"),
    ("path-length", "path length"),
    ("leaf-is-a-ca", "cA must not be asserted"),
    ("leaf-keyusage-without-digitalsignature", "digitalSignature"),
    ("name-constraints", "name constraints"),
    ("unknown-critical-extension", "critical extension"),
    ("self-signed-in-bundle-without-digitalsignature", "digitalSignature"),
])
def test_verify_chain_enforces_webpki_rules(kind, reason):
    chain, bundle = _webpki_case(kind)
    with pytest.raises(keys.UnusableKey, match=reason):
        keys.verify_chain([keys.cert_der_b64(c) for c in chain], bundle)


# --------------------------------------------------------------------------- config

def test_auth_config_distribution_shape():
    cfg = AuthConfig.from_dict({"token": {"realm": "https://auth/token", "service": "s", "issuer": "i",
                                          "rootcertbundle": "/b.pem", "signingalgorithms": ["RS256", "ES256"],
                                          "autoredirect": False}})
    assert cfg.token and cfg.token.signingalgorithms == ("RS256", "ES256") and cfg.token.insufficientscopestatus is None
    assert AuthConfig.from_dict({"htpasswd": {"realm": "r", "path": "/p"}}).htpasswd.path == "/p"
    assert not AuthConfig.from_dict(None).enabled


@pytest.mark.parametrize("raw,message", [
    ({"silly": {}}, "unsupported auth scheme"),
    ({"htpasswd": {"realm": "r"}}, "auth.htpasswd.path is required"),
    ({"token": {"realm": "r", "issuer": "i"}}, "auth.token.service is required"),
    ({"token": {"realm": "r", "service": "s", "issuer": "i", "signingalgorithms": ["none"]}}, "unsupported signing"),
    ({"token": {"realm": "r", "service": "s", "issuer": "i", "signingalgorithms": "RS256"}}, "must be a non-empty"),
    ({"token": {"realm": "r", "service": "s", "issuer": "i", "autoredirect": "sometimes"}}, "expected true or false"),
    ({"token": {"realm": "r", "service": "s", "issuer": "i", "insufficientscopestatus": 500}}, "auto, 401 or 403"),
    ({"token": {"realm": "r", "service": "s", "issuer": "i", "insufficientscopestatus": "sometimes"}}, "integer"),
    ({"token": {"service": "s", "issuer": "i"}}, "auth.token.realm is required"),
    ("x", "auth.x: unsupported auth scheme"),  # distribution's string form names the scheme
    (5, "expected a mapping"),
])
def test_auth_config_errors(raw, message):
    with pytest.raises(ConfigError, match=message):
        AuthConfig.from_dict(raw)


@pytest.mark.parametrize("rules,message", [
    ([{"name": "x", "actions": ["pull"]}], "needs 'account'"),
    ([{"account": "a", "actions": ["pull"]}], "name is required"),
    ([{"account": "a", "name": "x", "actions": ["fly"]}], "unknown repository action"),
    ([{"account": "a b", "name": "x", "actions": ["pull"]}], "account"),
    ("nope", "expected a list"),
])
def test_tokenserver_rule_errors(rules, message):
    with pytest.raises(ConfigError, match=message):
        TokenServerConfig.from_dict({"issuer": "i", "service": "s", "users": "u", "key": "k", "rules": rules})


def test_tokenserver_config_defaults_and_errors():
    cfg = TokenServerConfig.from_dict({"issuer": "i", "service": ["s1", "s2"], "users": "u", "key": "k"})
    assert cfg.services == ("s1", "s2") and cfg.path == "/auth/token" and cfg.expiration == 300
    assert TokenServerConfig.from_dict(None) is None
    assert TokenServerConfig.from_dict({"enabled": False}) is None
    with pytest.raises(ConfigError, match="between 60s and 24h"):
        TokenServerConfig.from_dict({"issuer": "i", "service": "s", "users": "u", "key": "k", "expiration": "10s"})
    with pytest.raises(ConfigError, match="absolute URL path"):
        TokenServerConfig.from_dict({"issuer": "i", "service": "s", "users": "u", "key": "k", "path": "token"})


# --------------------------------------------------------------------------- rate limit, refresh store

async def test_login_limiter():
    now = [1000.0]
    lim = LoginLimiter(3, 60, address_failures=6, account_failures=9, clock=lambda: now[0])
    for _ in range(3):
        assert await lim.retry_after("alice", "10.0.0.1") == 0
        await lim.failed("alice", "10.0.0.1")
    assert await lim.retry_after("alice", "10.0.0.1") > 0  # that address, that account: slowed
    assert await lim.retry_after("alice", "10.0.0.2") == 0  # the owner elsewhere: not
    assert await lim.retry_after("bob", "10.0.0.1") == 0  # another account from there: not (yet)
    for user in ("bob", "carol", "dave"):
        await lim.failed(user, "10.0.0.1")
    assert await lim.retry_after("erin", "10.0.0.1") > 0  # six failures from one address: spraying
    assert await lim.retry_after(None, "10.0.0.1") > 0  # refresh tokens too
    now[0] += 61
    assert await lim.retry_after("alice", "10.0.0.1") == 0 and await lim.retry_after("erin", "10.0.0.1") == 0
    # a right password forgives that address's guesses at that account, and remembers the address
    await lim.failed("alice", "10.0.0.3")
    await lim.succeeded("alice", "10.0.0.3")
    assert (await lim.retry_after("alice", "10.0.0.3")) == 0
    # many addresses guessing one account: over its budget only addresses it signed in from may try
    for i in range(9):
        await lim.failed("alice", f"192.0.2.{i}")
    assert await lim.retry_after("alice", "198.51.100.1") > 0
    assert await lim.retry_after("alice", "10.0.0.3") == 0
    assert await lim.retry_after("bob", "198.51.100.1") == 0
    now[0] += 61
    assert await lim.retry_after("alice", "198.51.100.1") == 0


async def test_login_limiter_memory_is_bounded():
    store = MemoryFailureStore(60, max_entries=4, max_keys=100)
    lim = LoginLimiter(2, 60, store=store)
    for i in range(1000):
        await lim.failed(f"user{i}", f"10.0.{i // 250}.{i % 250}")
        await lim.succeeded("alice", f"10.1.{i // 250}.{i % 250}")
    assert len(store._failures) <= 100 and all(len(d) <= 4 for d in store._failures.values())
    assert len(store._sets) <= 100 and all(len(m) <= 32 for m in store._sets.values())


def test_refresh_store_persists_and_revokes(tmp_path):
    store = RefreshStore(tmp_path / "rt.json", lifetime=3600)
    token = store.issue("alice", "docker", "svc")
    assert token not in (tmp_path / "rt.json").read_text()  # only a hash is stored
    again = RefreshStore(tmp_path / "rt.json", lifetime=3600)  # "restart"
    record = again.lookup(token)
    assert record and record.account == "alice" and record.client_id == "docker"
    assert store.revoke(account="alice") == 1
    assert again.lookup(token) is None  # another instance sees the revocation
    assert again.lookup("rt1_" + "A" * 43) is None and again.lookup("junk") is None
    short = RefreshStore(tmp_path / "rt2.json", lifetime=0.01)
    t2 = short.issue("bob", "c", "svc")
    time.sleep(0.02)
    assert short.lookup(t2) is None


@pytest.mark.parametrize("kind", ["rsa", "ec", "ec384", "ed25519"])
async def test_signer_and_verifier_agree_for_every_key_type(tmp_path, kind):
    from cryptography.hazmat.primitives.asymmetric import ec

    from registry.auth.bearer import TokenVerifier
    from registry.auth.config import TokenConfig
    from registry.auth.tokenserver import TokenSigner

    key = ec.generate_private_key(ec.SECP384R1()) if kind == "ec384" else keys.generate_private_key(kind)
    cert = keys.make_certificate(key, "signer")
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(keys.certificate_pem(cert))
    signer = TokenSigner(key, [cert], "iss", 300)
    assert signer.algorithm == {"rsa": "RS256", "ec": "ES256", "ec384": "ES384", "ed25519": "EdDSA"}[kind]
    token, _ = signer.sign("alice", "svc", parse_scopes(["repository:a/b:pull,push"]))
    cfg = TokenConfig(realm="r", service="svc", issuer="iss", rootcertbundle=str(bundle))
    grants = await TokenVerifier.from_config(cfg).verify(token)
    assert grants.allows("repository", "a/b", "push") and grants.subject == "alice"
    # the JWKS form of the key verifies too (kid lookup, no bundle)
    jwks = tmp_path / "jwks.json"
    jwks.write_text(__import__("json").dumps(signer.jwks()))
    no_x5c = TokenSigner(key, [], "iss", 300).sign("alice", "svc", [])[0]
    cfg = TokenConfig(realm="r", service="svc", issuer="iss", jwks=str(jwks))
    assert (await TokenVerifier.from_config(cfg).verify(no_x5c)).subject == "alice"


async def test_hmac_only_with_oct_keys_and_only_when_allowed(tmp_path):
    import json as json_mod

    import jwt as pyjwt

    from registry.auth.bearer import TokenVerifier
    from registry.auth.config import TokenConfig

    secret = b"0123456789abcdef0123456789abcdef"
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json_mod.dumps({"keys": [{"kty": "oct", "kid": "shared", "k": base64.urlsafe_b64encode(
        secret).rstrip(b"=").decode()}]}))
    now = int(time.time())
    token = pyjwt.encode({"iss": "i", "aud": "s", "exp": now + 60, "access": []}, secret, algorithm="HS256",
                         headers={"kid": "shared"})
    allowed = TokenConfig(realm="r", service="s", issuer="i", jwks=str(jwks), signingalgorithms=("HS256",))
    assert (await TokenVerifier.from_config(allowed).verify(token)).scopes() == []
    default = TokenConfig(realm="r", service="s", issuer="i", jwks=str(jwks))
    with pytest.raises(keys.UnusableKey, match="at least one signing key"):
        TokenVerifier.from_config(default)  # the oct key is dropped: nothing left to trust


def test_refresh_store_corruption_is_reported_not_crashing(tmp_path):
    from registry.auth.refresh import RefreshStoreError
    store = RefreshStore(tmp_path / "rt.json", lifetime=3600)
    token = store.issue("alice", "c", "svc")
    (tmp_path / "rt.json").write_text("{not json")
    assert store.lookup(token) is None  # refused and logged, not a 500
    with pytest.raises(RefreshStoreError, match="unreadable"):
        RefreshStore(tmp_path / "rt.json", lifetime=3600)
