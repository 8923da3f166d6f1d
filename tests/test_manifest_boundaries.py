"""registry.manifests at its boundaries: the size limit as a number, every field's type, schema 1
signature counts, every key type (real keys, real signatures), and the key types that must be
refused. Building blocks (manifests, libtrust JWS written independently) come from test_manifests."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
from typing import Any, Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from registry import mediatypes as mt
from registry.errors import ErrorCode, RegistryError
from registry.manifests import (
    MAX_MANIFEST_SIZE,
    Descriptor,
    check_manifest_size,
    detect_media_type,
    manifest_digest,
    parse_manifest,
    parse_stored,
)
from test_manifests import (
    CONFIG,
    LAYERS,
    SUBJECT,
    b64url,
    desc,
    docker_list,
    dumps,
    jwk_of,
    oci_index,
    oci_manifest,
    schema1_payload,
    sha256,
)

FOUR_MIB = 4194304  # the spec's minimum a registry must take; written out, not derived


def refused(body: bytes, content_type: str | None = mt.OCI_MANIFEST, **kwargs: Any) -> RegistryError:
    """The one clean refusal: a RegistryError (never a TypeError, KeyError... from deep inside)."""
    with pytest.raises(RegistryError) as info:
        parse_manifest(body, content_type, **kwargs)
    return info.value


# ------------------------------------------------------------------------------------------------
# the size limit


def _manifest_of_size(size: int) -> bytes:
    obj = oci_manifest(annotations={"pad": ""})
    obj["annotations"]["pad"] = "x" * (size - len(dumps(obj)))
    body = dumps(obj)
    assert len(body) == size
    return body


def test_size_limit_is_four_mib() -> None:
    assert MAX_MANIFEST_SIZE == FOUR_MIB
    body = _manifest_of_size(FOUR_MIB)
    assert parse_manifest(body, mt.OCI_MANIFEST).size == FOUR_MIB  # exactly the limit: taken
    err = refused(_manifest_of_size(FOUR_MIB + 1))  # one byte more: 413
    assert (err.code, err.status) == (ErrorCode.MANIFEST_TOO_LARGE, 413)
    assert err.detail == {"size": FOUR_MIB + 1, "limit": FOUR_MIB}
    check_manifest_size(FOUR_MIB)
    with pytest.raises(RegistryError) as info:
        check_manifest_size(FOUR_MIB + 1)
    assert info.value.code is ErrorCode.MANIFEST_TOO_LARGE and "4194304" in info.value.message


def test_size_limit_is_configurable_both_ways() -> None:
    small = dumps(oci_manifest())
    assert parse_manifest(small, mt.OCI_MANIFEST, max_size=len(small)).size == len(small)
    assert refused(small, max_size=len(small) - 1).status == 413
    big = _manifest_of_size(FOUR_MIB + 10)
    assert parse_manifest(big, mt.OCI_MANIFEST, max_size=FOUR_MIB + 10).size == FOUR_MIB + 10
    check_manifest_size(0)
    check_manifest_size(100, max_size=100)
    with pytest.raises(RegistryError):
        check_manifest_size(101, max_size=100)


# ------------------------------------------------------------------------------------------------
# every field's type

WRONG_TYPES = [1, 1.5, True, "text", [], {}, None]


def _descriptor_cases(where: str, build: Callable[[dict[str, Any]], dict[str, Any]],
                      base: dict[str, Any]) -> list[tuple[str, dict[str, Any], str]]:
    """A descriptor at ``where`` with each field set to values of the wrong type or shape."""
    cases: list[tuple[str, Any, str]] = []
    for key, values in {
        "mediaType": [1, True, [], {}, None, "", "noslash"],
        "digest": [1, True, [], {}, None, "", "sha256:" + "g" * 64],
        "size": [-1, 1.5, True, "1", [], {}, None, 2**63],
        "urls": [1, "https://example.com/l", {}, [1], [None], [["https://x"]], ["ftp://example.com/l"],
                 ["https://example.com/l#frag"], ["https://"], ["example.com/l"], ["http://[::1"]],
        "platform": [1, "linux/amd64", [], True, {"os": 1}, {"architecture": []}, {"os.version": 1},
                     {"variant": {}}, {"os.features": "x"}, {"os.features": [1]}, {"features": [None]},
                     {"features": "sse4"}],
        "data": [1, 1.5, True, [], {}, "!!!!", "e30"],
        "annotations": [1, "a", [], {"k": 1}, {"k": None}, {"k": ["v"]}],
        "artifactType": [1, True, [], {}],
    }.items():
        for value in values:
            d = {**base, key: value}
            if value is None:
                del d[key]
            cases.append((f"{where}.{key}={json.dumps(value)[:30]}", build(d), f"{where}.{key}"))
    return cases


def _layer(d: dict[str, Any]) -> dict[str, Any]:
    return oci_manifest(layers=[LAYERS[0], d])


def _child(d: dict[str, Any]) -> dict[str, Any]:
    return oci_index(manifests=[d])


DESCRIPTOR_CASES = [
    *_descriptor_cases("config", lambda d: oci_manifest(config=d), CONFIG),
    *_descriptor_cases("layers[1]", _layer, LAYERS[1]),
    *_descriptor_cases("manifests[0]", _child, SUBJECT),
    *_descriptor_cases("subject", lambda d: oci_manifest(subject=d), SUBJECT),
]

TOP_LEVEL_CASES = [
    *[(f"mediaType={json.dumps(v)}", oci_manifest(mediaType=v), "mediaType must be")
      for v in [1, 1.5, True, [], {}, ""]],
    ("mediaType=null", {**oci_manifest(), "mediaType": None}, "mediaType must be"),
    *[(f"schemaVersion={json.dumps(v)}", oci_manifest(schemaVersion=v), "schemaVersion")
      for v in [2.0, True, "2", [2], {}, 0, 3, -2, 2**64]],
    ("schemaVersion=null", {**oci_manifest(), "schemaVersion": None}, "schemaVersion"),
    *[(f"config={json.dumps(v)}", oci_manifest(config=v), "config must be a descriptor")
      for v in [1, True, "sha256:x", [CONFIG]]],
    ("config=null", {**oci_manifest(), "config": None}, "config must be a descriptor"),
    *[(f"layers={json.dumps(v)[:20]}", oci_manifest(layers=v), "layers must be an array")
      for v in [1, True, "x", {"0": LAYERS[0]}]],
    *[(f"layers[0]={json.dumps(v)}", oci_manifest(layers=[v]), "layers[0] must be a descriptor")
      for v in [1, "x", [], True, None]],
    *[(f"manifests={json.dumps(v)[:20]}", oci_index(manifests=v), "manifests must be an array")
      for v in [1, True, "x", {"0": SUBJECT}]],
    *[(f"manifests[0]={json.dumps(v)}", oci_index(manifests=[v]), "manifests[0] must be a descriptor")
      for v in [1, "x", [], None]],
    *[(f"subject={json.dumps(v)[:20]}", oci_manifest(subject=v), "subject must be a descriptor")
      for v in [1, True, "x", [SUBJECT]]],
    *[(f"annotations={json.dumps(v)}", oci_manifest(annotations=v), "annotations must be")
      for v in [1, True, "a", ["a"], {"a": 1}, {"a": None}, {"a": {}}]],
    *[(f"index-annotations={json.dumps(v)}", oci_index(annotations=v), "annotations must be")
      for v in [1, ["a"], {"a": 1}]],
    *[(f"artifactType={json.dumps(v)}", oci_manifest(artifactType=v), "artifactType must be a string")
      for v in [1, True, ["a/b"], {}]],
    *[(f"index-artifactType={json.dumps(v)}", oci_index(artifactType=v), "artifactType must be a string")
      for v in [1, ["a/b"]]],
]


@pytest.mark.parametrize("name,obj,message", DESCRIPTOR_CASES + TOP_LEVEL_CASES,
                         ids=[c[0] for c in DESCRIPTOR_CASES + TOP_LEVEL_CASES])
def test_wrong_field_type_is_a_clean_manifest_invalid(name: str, obj: dict[str, Any], message: str) -> None:
    content_type = obj.get("mediaType") if isinstance(obj.get("mediaType"), str) and obj["mediaType"] else None
    err = refused(dumps(obj), content_type)
    assert (err.code, err.status) == (ErrorCode.MANIFEST_INVALID, 400), err.message
    assert message in err.message, err.message
    # the lenient GET side never raises on the same bytes
    detect_media_type(dumps(obj))
    manifest_digest(dumps(obj))
    parse_stored(dumps(obj))


def test_descriptor_data_that_is_not_a_string_is_refused_everywhere() -> None:
    """A non-string ``data`` must be MANIFEST_INVALID, never a TypeError out of base64."""
    for value in (1, 1.5, True, [], {}, ["e30="], {"b64": "e30="}):
        for obj, where in ((oci_manifest(config={**CONFIG, "data": value}), "config"),
                           (oci_manifest(layers=[{**LAYERS[0], "data": value}]), "layers[0]"),
                           (oci_index(manifests=[{**SUBJECT, "data": value}]), "manifests[0]"),
                           (oci_manifest(subject={**SUBJECT, "data": value}), "subject")):
            err = refused(dumps(obj), None)
            assert err.code is ErrorCode.MANIFEST_INVALID
            assert err.message == f"{where}.data must be a base64 string"


def test_field_values_at_their_limits_are_taken() -> None:
    """The accepting side of each bound above (else a refusal of everything would pass)."""
    empty = b""
    cases = [
        oci_manifest(config={**CONFIG, "size": 0}),
        oci_manifest(config={**CONFIG, "size": 2**63 - 1}),
        oci_manifest(layers=None),
        oci_manifest(layers=[]),
        {**oci_manifest(), "layers": None},
        oci_manifest(layers=[desc("a/b", b"x")]),  # any 'type/subtype'
        oci_manifest(config={**desc(mt.OCI_EMPTY, empty), "data": ""}),  # empty data, size 0
        oci_manifest(config={**desc(mt.OCI_CONFIG, b"{}"), "data": base64.b64encode(b"{}").decode()}),
        oci_manifest(layers=[{**LAYERS[0], "urls": []}]),
        oci_manifest(layers=[{**LAYERS[0], "urls": ["http://example.com/l", "https://example.com:8443/l?x=1"]}]),
        oci_manifest(layers=[{**LAYERS[0], "annotations": {}}]),
        oci_manifest(layers=[{**LAYERS[0], "artifactType": "application/x"}]),
        oci_manifest(annotations={}),
        oci_manifest(artifactType=""),
        {**oci_manifest(), "subject": None, "annotations": None, "artifactType": None},
        oci_index(manifests=[{**SUBJECT, "platform": {"architecture": "arm64", "os": "windows",
                                                      "os.version": "10.0.17763", "variant": "v8",
                                                      "os.features": ["win32k"], "features": ["sse4"]}}]),
        oci_index(manifests=[{**SUBJECT, "platform": {}}]),
        {**oci_index(), "manifests": None},
    ]
    for obj in cases:
        m = parse_manifest(dumps(obj), None)
        assert m.digest == sha256(dumps(obj))
    m = parse_manifest(dumps(oci_manifest(config={**CONFIG, "size": 2**63 - 1})), None)
    assert m.config is not None and m.config.size == 2**63 - 1
    m = parse_manifest(dumps(oci_manifest(artifactType="")), None)
    assert m.artifact_type is None
    m = parse_manifest(dumps(oci_manifest(layers=[{**LAYERS[0], "artifactType": "application/x",
                                                   "annotations": {"k": "v"}}])), None)
    assert m.layers[0] == Descriptor(LAYERS[0]["mediaType"], LAYERS[0]["digest"], LAYERS[0]["size"],
                                     annotations={"k": "v"}, artifact_type="application/x")


def test_kind_properties() -> None:
    """is_index / is_schema1 decide how the UI shows a manifest (registry/ui/model.py)."""
    image = parse_manifest(dumps(oci_manifest()), None)
    index = parse_manifest(dumps(docker_list()), None)
    schema1 = parse_manifest(schema1_payload(), mt.DOCKER_SCHEMA1, schema1_enabled=True)
    assert (image.is_index, image.is_schema1) == (False, False)
    assert (index.is_index, index.is_schema1) == (True, False)
    assert (schema1.is_index, schema1.is_schema1) == (False, True)


# ------------------------------------------------------------------------------------------------
# schema 1 fields


def _schema1(**change: Any) -> bytes:
    obj = json.loads(schema1_payload())
    obj.update(change)
    return json.dumps({k: v for k, v in obj.items() if v is not None}).encode()


SCHEMA1_FIELD_CASES = [
    *[(f"name={json.dumps(v)[:20]}", {"name": v}, "needs a name") for v in [1, True, [], {}, "", None, "a" * 256]],
    *[(f"tag={json.dumps(v)}", {"tag": v}, "tag must be a string") for v in [1, True, [], {}]],
    *[(f"architecture={json.dumps(v)}", {"architecture": v}, "architecture must be a string") for v in [1, []]],
    *[(f"fsLayers={json.dumps(v)}", {"fsLayers": v}, "fsLayers must be an array") for v in [1, "x", {}]],
    ("fsLayers-empty", {"fsLayers": [], "history": []}, "no fsLayers"),
    *[(f"fsLayers[0]={json.dumps(v)}", {"fsLayers": [v] * 3}, "fsLayers[0].blobSum")
      for v in [1, "sha256:" + "a" * 64, [], {}, {"blobSum": 1}, {"blobSum": None}, {"blobSum": "md5:" + "0" * 32}]],
    *[(f"history={json.dumps(v)}", {"history": v}, "history must be an array") for v in [1, "x", {}]],
    *[(f"history[0]={json.dumps(v)}", {"history": [v] * 3}, "history[0].v1Compatibility")
      for v in [1, "x", [], {}, {"v1Compatibility": 1}, {"v1Compatibility": {}}, {"v1Compatibility": None}]],
    ("history-short", {"history": [{"v1Compatibility": "{}"}] * 2}, "cardinality"),
]


@pytest.mark.parametrize("name,change,message", SCHEMA1_FIELD_CASES, ids=[c[0] for c in SCHEMA1_FIELD_CASES])
def test_schema1_field_types(name: str, change: dict[str, Any], message: str) -> None:
    err = refused(_schema1(**change), mt.DOCKER_SCHEMA1, schema1_enabled=True)
    assert err.code is ErrorCode.MANIFEST_INVALID
    assert message in err.message, err.message


def test_schema1_name_length_limit() -> None:
    assert parse_manifest(_schema1(name="a" * 255), mt.DOCKER_SCHEMA1, schema1_enabled=True).schema_version == 1
    assert "needs a name" in refused(_schema1(name="a" * 256), mt.DOCKER_SCHEMA1, schema1_enabled=True).message
    m = parse_manifest(_schema1(tag=None, architecture=None), mt.DOCKER_SCHEMA1, schema1_enabled=True)
    assert m.canonical is None and len(m.layers) == 3


# ------------------------------------------------------------------------------------------------
# schema 1 signatures: a libtrust pretty JWS with any key and any alg (written here, not by the module)


def _sign(key: Any, alg: str, data: bytes) -> bytes:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        hash_alg = {"ES256": hashes.SHA256(), "ES384": hashes.SHA384(), "ES512": hashes.SHA512()}.get(
            alg, {256: hashes.SHA256(), 384: hashes.SHA384(), 521: hashes.SHA512()}[key.curve.key_size])
        size = (key.curve.key_size + 7) // 8
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hash_alg)))
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    if isinstance(key, rsa.RSAPrivateKey):
        hash_alg = {"RS384": hashes.SHA384(), "RS512": hashes.SHA512()}.get(alg, hashes.SHA256())
        return key.sign(data, padding.PKCS1v15(), hash_alg)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    if isinstance(key, dsa.DSAPrivateKey):
        return key.sign(data, hashes.SHA256())
    raise AssertionError(key)


def _cert(key: Any, signer: Any | None = None) -> x509.Certificate:
    """A self-signed certificate for ``key`` (or one ``signer`` issues; Ed25519 signs without a hash)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "schema1 signer")])
    now = datetime.datetime.now(datetime.timezone.utc)
    issuer = signer or key
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(7).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(issuer, None if isinstance(issuer, ed25519.Ed25519PrivateKey) else hashes.SHA256()))


def _x5c(cert: x509.Certificate) -> list[str]:
    return [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]


def signed(payload: bytes, signers: list[dict[str, Any]]) -> bytes:
    """Each signer: key, alg, and the header's public key (``jwk`` of the key unless ``x5c`` or a
    ``header`` is given); ``sig`` overrides the signature bytes."""
    length = len(payload) - 2
    protected = b64url(json.dumps({"formatLength": length, "formatTail": b64url(payload[length:]),
                                   "time": "2024-01-01T00:00:00Z"}).encode())
    signatures = []
    for s in signers:
        header = s.get("header") or ({"alg": s["alg"], "x5c": s["x5c"]} if "x5c" in s
                                     else {"alg": s["alg"], "jwk": jwk_of(s["key"])})
        sig = s.get("sig") or _sign(s["key"], s["alg"], f"{protected}.{b64url(payload)}".encode())
        signatures.append({"header": header, "signature": b64url(sig), "protected": protected})
    return payload[:length] + b',\n   "signatures": ' + json.dumps(signatures, indent=3).encode() + b"\n}"


def parse_s1(body: bytes):
    return parse_manifest(body, mt.DOCKER_SCHEMA1_SIGNED, schema1_enabled=True)


def refused_s1(body: bytes) -> str:
    err = refused(body, mt.DOCKER_SCHEMA1_SIGNED, schema1_enabled=True)
    assert (err.code, err.status) == (ErrorCode.MANIFEST_INVALID, 400)
    return err.message


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    return {
        "P-256": ec.generate_private_key(ec.SECP256R1()),
        "P-384": ec.generate_private_key(ec.SECP384R1()),
        "P-521": ec.generate_private_key(ec.SECP521R1()),
        "RSA": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "secp256k1": ec.generate_private_key(ec.SECP256K1()),
        "Ed25519": ed25519.Ed25519PrivateKey.generate(),
        "DSA": dsa.generate_private_key(key_size=2048),
    }


GOOD_ALGS = [("P-256", "ES256"), ("P-384", "ES384"), ("P-521", "ES512"),
             ("RSA", "RS256"), ("RSA", "RS384"), ("RSA", "RS512")]


@pytest.mark.parametrize("key_name,alg", GOOD_ALGS, ids=[f"{k}-{a}" for k, a in GOOD_ALGS])
@pytest.mark.parametrize("carrier", ["jwk", "x5c"])
def test_every_accepted_key_type_verifies(keys, key_name: str, alg: str, carrier: str) -> None:
    key = keys[key_name]
    payload = schema1_payload()
    signer: dict[str, Any] = {"key": key, "alg": alg}
    if carrier == "x5c":
        signer["x5c"] = _x5c(_cert(key))
    m = parse_s1(signed(payload, [signer]))
    assert m.media_type == mt.DOCKER_SCHEMA1_SIGNED and m.digest == sha256(payload) and m.canonical == payload
    # the same signature over an edited payload does not verify
    forged = signed(payload, [{**signer, "sig": _sign(key, alg, b"something else")}])
    assert "does not verify: invalid signature" in refused_s1(forged)


WRONG_ALGS = [
    ("P-256", "ES384", "curve P-256 needs alg ES256"), ("P-256", "ES512", "needs alg ES256"),
    ("P-256", "RS256", "needs alg ES256"), ("P-256", "none", "needs alg ES256"),
    ("P-384", "ES256", "curve P-384 needs alg ES384"), ("P-521", "ES384", "curve P-521 needs alg ES512"),
    ("RSA", "ES256", "RSA key cannot verify alg 'ES256'"), ("RSA", "PS256", "cannot verify alg"),
    ("RSA", "HS256", "cannot verify alg"), ("RSA", "none", "cannot verify alg"), ("RSA", "rs256", "cannot verify alg"),
]


@pytest.mark.parametrize("key_name,alg,message", WRONG_ALGS, ids=[f"{k}-{a}" for k, a, _ in WRONG_ALGS])
def test_wrong_alg_for_the_key_is_refused(keys, key_name: str, alg: str, message: str) -> None:
    body = signed(schema1_payload(), [{"key": keys[key_name], "alg": alg}])
    assert message in refused_s1(body)


def test_rsa_alg_must_match_the_hash_signed_with(keys) -> None:
    """An RS256 signature declared as RS384 (and so on) does not verify."""
    payload = schema1_payload()
    for declared, used in (("RS384", "RS256"), ("RS256", "RS512"), ("RS512", "RS384")):
        protected_sig = signed(payload, [{"key": keys["RSA"], "alg": used}])
        obj = json.loads(protected_sig)
        obj["signatures"][0]["header"]["alg"] = declared
        body = payload[:-2] + b',\n   "signatures": ' + json.dumps(obj["signatures"]).encode() + b"\n}"
        assert "invalid signature" in refused_s1(body)


@pytest.mark.parametrize("key_name", ["Ed25519", "DSA"])
def test_key_neither_ec_nor_rsa_is_refused(keys, key_name: str) -> None:
    """A real signature by an Ed25519 or DSA key in an x5c certificate: libtrust knows only EC and
    RSA keys, so the manifest is refused whatever its signature says."""
    key = keys[key_name]
    payload = schema1_payload()
    for alg in ("ES256", "RS256", "EdDSA", "DS256"):
        body = signed(payload, [{"key": key, "alg": alg, "x5c": _x5c(_cert(key))}])
        assert "does not verify: unsupported key type" in refused_s1(body)
    # a certificate an EC key issued for that key: the subject key still decides
    body = signed(payload, [{"key": key, "alg": "ES256", "x5c": _x5c(_cert(key, keys["P-256"]))}])
    assert "unsupported key type" in refused_s1(body)


def test_ec_curve_libtrust_does_not_know_is_refused(keys) -> None:
    key = keys["secp256k1"]
    body = signed(schema1_payload(), [{"key": key, "alg": "ES256", "x5c": _x5c(_cert(key))}])
    assert refused_s1(body) == "schema 1 signature 0 does not verify: unsupported elliptic curve"


def test_jwk_of_another_key_type_is_refused(keys) -> None:
    payload = schema1_payload()
    ed = keys["Ed25519"].public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    ec_jwk = jwk_of(keys["P-256"])
    rsa_jwk = jwk_of(keys["RSA"])
    cases = {
        "okp": ({"kty": "OKP", "crv": "Ed25519", "x": b64url(ed)}, "kty 'OKP' is not EC or RSA"),
        "no-kty": ({k: v for k, v in ec_jwk.items() if k != "kty"}, "kty None is not EC or RSA"),
        "kty-lower": ({**ec_jwk, "kty": "ec"}, "is not EC or RSA"),
        "kty-list": ({**ec_jwk, "kty": ["EC"]}, "is not EC or RSA"),
        "crv-missing": ({k: v for k, v in ec_jwk.items() if k != "crv"}, "crv None is not P-256"),
        "crv-secp256k1": ({**ec_jwk, "crv": "secp256k1"}, "is not P-256, P-384 or P-521"),
        "x-short": ({**ec_jwk, "x": b64url(b"\x01" * 31)}, "coordinates must be 32 octets"),
        "y-long": ({**ec_jwk, "y": b64url(b"\x01" * 33)}, "coordinates must be 32 octets"),
        "x-not-string": ({**ec_jwk, "x": 5}, "jwk.x must be a base64url string"),
        "y-missing": ({k: v for k, v in ec_jwk.items() if k != "y"}, "jwk.y must be a base64url string"),
        "x-bad-base64": ({**ec_jwk, "x": "a"}, "jwk.x is not valid base64url"),
        "n-missing": ({k: v for k, v in rsa_jwk.items() if k != "n"}, "jwk.n must be a base64url string"),
        "e-not-base64": ({**rsa_jwk, "e": "A*B"}, "jwk.e is not valid base64url"),
        "rsa-zero-modulus": ({**rsa_jwk, "n": "AA"}, "not a valid public key"),
        "kid-not-string": ({**ec_jwk, "kid": 5}, "kid does not match"),
        "kid-empty": ({**ec_jwk, "kid": ""}, "kid does not match"),
    }
    for case, (jwk, message) in cases.items():
        body = signed(payload, [{"key": keys["P-256"], "alg": "ES256", "header": {"alg": "ES256", "jwk": jwk}}])
        assert message in refused_s1(body), case
    # no kid at all is fine (libtrust computes it; the signature is what counts)
    jwk = {k: v for k, v in ec_jwk.items() if k != "kid"}
    body = signed(payload, [{"key": keys["P-256"], "alg": "ES256", "header": {"alg": "ES256", "jwk": jwk}}])
    assert parse_s1(body).digest == sha256(payload)


def test_x5c_that_is_not_a_base64_certificate_is_refused(keys) -> None:
    key = keys["P-256"]
    good = _x5c(_cert(key))[0]
    der = base64.b64decode(good)
    cases = {
        "not-base64": (["***not base64***"], "x5c[0] is not a DER certificate"),
        "base64url-alphabet": ([base64.urlsafe_b64encode(der).decode().replace("=", "") + "-_"],
                               "x5c[0] is not a DER certificate"),
        "unpadded": ([good.rstrip("=") + "A"] if good.endswith("=") else [good + "A"], "x5c[0] is not a DER"),
        "base64-not-der": ([base64.b64encode(b"not a certificate").decode()], "x5c[0] is not a DER certificate"),
        "truncated-der": ([base64.b64encode(der[:-10]).decode()], "x5c[0] is not a DER certificate"),
        "not-array": (good, "x5c must be an array of base64 certificates"),
        "first-not-string": ([5], "x5c must be an array of base64 certificates"),
        "first-object": ([{"cert": good}], "x5c must be an array"),
    }
    for case, (x5c, message) in cases.items():
        body = signed(schema1_payload(), [{"key": key, "alg": "ES256", "header": {"alg": "ES256", "x5c": x5c}}])
        assert message in refused_s1(body), case
    # an empty x5c falls back to the jwk, as libtrust does (it looks at the chain only when non-empty)
    header = {"alg": "ES256", "x5c": [], "jwk": jwk_of(key)}
    assert parse_s1(signed(schema1_payload(), [{"key": key, "alg": "ES256", "header": header}])).schema_version == 1
    # the chain is not verified (libtrust's Verify): only the first certificate's key counts
    header = {"alg": "ES256", "x5c": [good, "garbage"]}
    assert parse_s1(signed(schema1_payload(), [{"key": key, "alg": "ES256", "header": header}])).schema_version == 1
    # x5c wins over jwk: a jwk of another key beside a good x5c is ignored
    header = {"alg": "ES256", "x5c": [good], "jwk": jwk_of(keys["P-384"])}
    assert parse_s1(signed(schema1_payload(), [{"key": key, "alg": "ES256", "header": header}])).schema_version == 1


# ------------------------------------------------------------------------------------------------
# how many signatures


def _signers(count: int) -> list[dict[str, Any]]:
    return [{"key": ec.generate_private_key(ec.SECP256R1()), "alg": "ES256"} for _ in range(count)]


@pytest.mark.parametrize("count", [1, 2, 16])
def test_signature_counts_up_to_sixteen_verify(count: int) -> None:
    payload = schema1_payload()
    m = parse_s1(signed(payload, _signers(count)))
    assert m.digest == sha256(payload) and m.canonical == payload


def test_seventeen_signatures_are_refused() -> None:
    assert "more than 16 signatures" in refused_s1(signed(schema1_payload(), _signers(17)))


def test_one_bad_signature_among_sixteen_is_refused(keys) -> None:
    signers = _signers(15) + [{"key": keys["P-256"], "alg": "ES256", "sig": b"\x00" * 64}]
    assert "schema 1 signature 15 does not verify" in refused_s1(signed(schema1_payload(), signers))


def test_zero_signatures_are_refused() -> None:
    payload = schema1_payload()
    for value in ([], None, {}, "sig", 1):
        body = payload[:-2] + b',\n   "signatures": ' + json.dumps(value).encode() + b"\n}"
        assert "has no signatures" in refused_s1(body)


# ------------------------------------------------------------------------------------------------
# the JWS structure around the signature


def _with_signature(payload: bytes, change: Callable[[dict[str, Any]], None], key: Any) -> bytes:
    obj = json.loads(signed(payload, [{"key": key, "alg": "ES256"}]))
    change(obj["signatures"][0])
    return payload[:-2] + b',\n   "signatures": ' + json.dumps(obj["signatures"]).encode() + b"\n}"


def test_jws_structure_defects_are_refused(keys) -> None:
    payload = schema1_payload()
    key = keys["P-256"]
    length = len(payload) - 2

    def protected(**fields: Any) -> str:
        return b64url(json.dumps(fields).encode())

    tail = b64url(payload[length:])
    cases: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
        "header-missing": (lambda s: s.pop("header"), "signatures[0].header must be an object"),
        "header-string": (lambda s: s.update(header="ES256"), "header must be an object"),
        "alg-missing": (lambda s: s["header"].pop("alg"), "header.alg must be a string"),
        "alg-number": (lambda s: s["header"].update(alg=256), "header.alg must be a string"),
        "signature-missing": (lambda s: s.pop("signature"), "signature must be a base64url string"),
        "signature-length-4n+1": (lambda s: s.update(signature=s["signature"] + "AAA"), "not valid base64url"),
        "signature-with-space": (lambda s: s.update(signature=s["signature"][:10] + " " + s["signature"][10:]),
                                 "not valid base64url"),
        "signature-short": (lambda s: s.update(signature=b64url(b"\x01" * 63)), "signature is 63 octets, should be 64"),
        "signature-long": (lambda s: s.update(signature=b64url(b"\x01" * 65)), "signature is 65 octets"),
        "protected-missing": (lambda s: s.pop("protected"), "protected must be a base64url string"),
        "protected-not-json": (lambda s: s.update(protected=b64url(b"not json")), "protected is not a JSON object"),
        "protected-array": (lambda s: s.update(protected=b64url(b"[1]")), "protected is not a JSON object"),
        "protected-not-utf8": (lambda s: s.update(protected=b64url(b'{"a":"\xff"}')), "not a JSON object"),
        "formatLength-negative": (lambda s: s.update(protected=protected(formatLength=-1, formatTail=tail)),
                                  "no valid formatLength"),
        "formatLength-string": (lambda s: s.update(protected=protected(formatLength=str(length), formatTail=tail)),
                                "no valid formatLength"),
        "formatLength-bool": (lambda s: s.update(protected=protected(formatLength=True, formatTail=tail)),
                              "no valid formatLength"),
        "formatLength-float": (lambda s: s.update(protected=protected(formatLength=float(length), formatTail=tail)),
                               "no valid formatLength"),
        "formatLength-past-end": (lambda s: s.update(protected=protected(formatLength=10**6, formatTail=tail)),
                                  "exceeds the manifest length"),
        "formatTail-missing": (lambda s: s.update(protected=protected(formatLength=length)),
                               "formatTail must be a base64url string"),
        "formatTail-number": (lambda s: s.update(protected=protected(formatLength=length, formatTail=1)),
                              "formatTail must be"),
        "formatTail-bad": (lambda s: s.update(protected=protected(formatLength=length, formatTail="*")),
                           "formatTail is not valid base64url"),
        # another cut of the body: the signature covers the protected header, so it fails
        "formatLength-shorter": (lambda s: s.update(protected=protected(formatLength=length - 1, formatTail=tail)),
                                 "does not verify: invalid signature"),
    }
    for case, (change, message) in cases.items():
        assert message in refused_s1(_with_signature(payload, change, key)), case
    # formatLength 0 with the whole payload as tail is a valid (if odd) cut: it verifies when signed so
    whole = b64url(payload)
    prot = protected(formatLength=0, formatTail=whole)
    sig = _sign(key, "ES256", f"{prot}.{b64url(payload)}".encode())
    sigs = [{"header": {"alg": "ES256", "jwk": jwk_of(key)}, "signature": b64url(sig), "protected": prot}]
    body = payload[:-2] + b',\n   "signatures": ' + json.dumps(sigs).encode() + b"\n}"
    assert parse_s1(body).canonical == payload


def test_signature_element_that_is_not_an_object_is_refused(keys) -> None:
    payload = schema1_payload()
    good = json.loads(signed(payload, [{"key": keys["P-256"], "alg": "ES256"}]))["signatures"][0]
    for bad in (1, "sig", [good], None):
        body = payload[:-2] + b',\n   "signatures": ' + json.dumps([good, bad]).encode() + b"\n}"
        assert "signatures[1] must be an object" in refused_s1(body)


def test_padded_base64url_is_taken_as_libtrust_does(keys) -> None:
    """libtrust pads before decoding: an already padded value decodes the same."""
    payload = schema1_payload()
    key = keys["P-256"]  # 64-octet signature: 86 base64url characters, 2 of padding

    def pad(s: dict[str, Any]) -> None:
        s["signature"] += "=" * (-len(s["signature"]) % 4)

    obj = json.loads(signed(payload, [{"key": key, "alg": "ES256"}]))
    pad(obj["signatures"][0])
    assert obj["signatures"][0]["signature"].endswith("=")
    body = payload[:-2] + b',\n   "signatures": ' + json.dumps(obj["signatures"]).encode() + b"\n}"
    assert parse_s1(body).digest == sha256(payload)


def test_descriptor_json_form_keeps_every_field() -> None:
    """Descriptor.to_dict (referrers lists, events) writes back each optional field as pushed."""
    layer = {**LAYERS[0], "urls": ["https://example.com/l"], "artifactType": "application/x",
             "annotations": {"k": "v"}}
    config = {**desc(mt.OCI_CONFIG, b"{}"), "data": base64.b64encode(b"{}").decode()}
    m = parse_manifest(dumps(oci_manifest(config=config, layers=[layer])), None)
    assert m.layers[0].to_dict() == layer
    assert m.config is not None and m.config.to_dict() == config
    child = {**SUBJECT, "platform": {"os": "linux", "architecture": "arm64"}}
    assert parse_manifest(dumps(oci_index(manifests=[child])), None).children[0].to_dict() == child


def test_put_by_digest_takes_a_parsed_digest() -> None:
    from registry.reference import try_digest

    body = dumps(oci_manifest())
    for algorithm in ("sha256", "sha512"):
        expected = try_digest(f"{algorithm}:" + hashlib.new(algorithm, body).hexdigest())
        assert expected is not None and not isinstance(expected, str)
        assert parse_manifest(body, mt.OCI_MANIFEST, expected_digest=expected).digest == str(expected)


@pytest.mark.parametrize(("body", "content_type"), [
    (oci_manifest(), mt.DOCKER_SCHEMA1),
    (oci_manifest(), mt.DOCKER_SCHEMA1_SIGNED),
    ({"schemaVersion": 1, "mediaType": mt.DOCKER_SCHEMA1, "name": "a"}, mt.OCI_MANIFEST),
    ({"schemaVersion": 1, "mediaType": mt.DOCKER_SCHEMA1_SIGNED, "name": "a"}, mt.DOCKER_MANIFEST),
    (docker_list(), mt.OCI_INDEX),
], ids=["oci-as-schema1", "oci-as-signed-schema1", "schema1-as-oci", "signed-schema1-as-docker", "list-as-oci-index"])
def test_content_type_and_body_media_type_of_different_kinds(body: dict[str, Any], content_type: str) -> None:
    """Only the two schema 1 types stand in for each other; any other pair is refused as a mismatch
    (before the schema version is looked at)."""
    for enabled in (False, True):
        err = refused(dumps(body), content_type, schema1_enabled=enabled)
        assert err.message == (f"Content-Type {content_type!r} does not match the manifest's mediaType "
                               f"{body['mediaType']!r}")


def test_long_bad_digest_is_shown_cut_to_200_characters() -> None:
    bad = "sha256:" + "a" * 300
    err = refused(dumps(oci_manifest(config={**CONFIG, "digest": bad})))
    assert err.message == f"config.digest {bad[:200]!r} is not a valid sha256 or sha512 digest"


def test_index_children_are_required_once_each() -> None:
    a, b = desc(mt.OCI_MANIFEST, b"a"), desc(mt.OCI_MANIFEST, b"b")
    m = parse_manifest(dumps(oci_index(manifests=[a, b, a, b, a])), None)
    assert [d.digest for d in m.required_manifests()] == [a["digest"], b["digest"]]
    assert len(m.children) == 5 and m.required_blobs() == []


def test_format_length_equal_to_the_body_length_is_not_past_the_end(keys) -> None:
    """formatLength may be the whole body (the bound is inclusive); such a cut then fails later."""
    payload = schema1_payload()
    key = keys["P-256"]
    target = len(payload) + 1000

    def build(pad: int) -> bytes:
        prot = b64url(json.dumps({"formatLength": target, "formatTail": ""}).encode())
        sig = _sign(key, "ES256", f"{prot}.{b64url(payload)}".encode())
        sigs = [{"header": {"alg": "ES256", "jwk": jwk_of(key)}, "signature": b64url(sig), "protected": prot}]
        return payload[:-2] + b',\n   "signatures": ' + json.dumps(sigs).encode() + b" " * pad + b"\n}"

    missing = target - len(build(0))
    body = build(missing)
    assert len(body) == target
    message = refused_s1(body)
    assert "exceeds" not in message and "does not verify" in message
    one_short = build(missing - 1)
    assert len(one_short) == target - 1
    assert "exceeds the manifest length" in refused_s1(one_short)


def test_index_subject_is_parsed_and_checked() -> None:
    m = parse_manifest(dumps(oci_index(subject=SUBJECT)), None)
    assert m.subject == Descriptor(SUBJECT["mediaType"], SUBJECT["digest"], SUBJECT["size"])
    assert parse_manifest(dumps(oci_index()), None).subject is None
    for bad in (1, "x", [SUBJECT], {**SUBJECT, "size": "1"}):
        err = refused(dumps(oci_index(subject=bad)), mt.OCI_INDEX)
        assert err.message.startswith("subject"), err.message


def test_manifest_repr_leaves_out_the_parsed_json_and_payload() -> None:
    """A Manifest in a log line or traceback shows its body once, not again as parsed JSON and
    (signed schema 1) canonical payload: ``json`` and ``canonical`` stay out of the repr."""
    m = parse_manifest(schema1_payload(), mt.DOCKER_SCHEMA1, schema1_enabled=True)
    text = repr(m)
    assert "json=" not in text and "canonical=" not in text
    assert "body=" in text and "digest=" in text


def test_schema1_layers_have_unknown_size() -> None:
    """fsLayers carry no size: their descriptors say 0 (the store must not compare blob sizes)."""
    m = parse_manifest(schema1_payload(), mt.DOCKER_SCHEMA1, schema1_enabled=True)
    assert [d.size for d in m.layers] == [0, 0, 0] and [d.size for d in m.required_blobs()] == [0, 0]
    assert {d.media_type for d in m.layers} == {mt.DOCKER_SCHEMA1_LAYER}


def test_x5c_with_characters_outside_base64_is_refused(keys) -> None:
    """libtrust decodes x5c with Go's strict StdEncoding: a stray character is an error, not skipped."""
    key = keys["P-256"]
    good = _x5c(_cert(key))[0]
    header = {"alg": "ES256", "x5c": [good]}
    assert parse_s1(signed(schema1_payload(), [{"key": key, "alg": "ES256", "header": header}])).schema_version == 1
    for junk in ("!", "*", "-", "_", " "):
        stray = good[:40] + junk + good[40:]
        header = {"alg": "ES256", "x5c": [stray]}
        body = signed(schema1_payload(), [{"key": key, "alg": "ES256", "header": header}])
        assert "x5c[0] is not a DER certificate" in refused_s1(body), junk
