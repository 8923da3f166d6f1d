"""Property-based tests (hypothesis) of every parser of names, tags, references, digests, upload ids,
ranges, Content-Range (and the body length it declares), page sizes, token scopes, driver paths and
upload state tokens.

Two kinds of property for each: whatever the input, the parser answers with a value or its own
OCI error (never another exception: that would be a 500), and what it accepts is safe to use
(a storage path component, an in-bounds range); and, for inputs built from the grammar, it accepts
them and gives back what they say (round trips).
"""

from __future__ import annotations

import asyncio
import re
import string

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from drivers.base import InvalidPath, check_path, is_valid_component, is_valid_path
from registry.api.base import exactly
from registry.auth.scope import ScopeError, parse_scope, parse_scopes
from registry.errors import ErrorCode, RegistryError
from registry.reference import (
    DIGEST_ALGORITHMS,
    MAX_NAME_LENGTH,
    Digest,
    is_valid_name,
    is_valid_tag,
    parse_byte_range,
    parse_content_range,
    parse_digest,
    parse_digest_algorithm,
    parse_name,
    parse_page_size,
    parse_reference,
    parse_tag,
    parse_upload_id,
    try_digest,
)
from registry.store import paths
from registry.store.uploads import UploadSession, UploadStore

settings.register_profile("registry", max_examples=100, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("registry")

#: text a client might send: printable ASCII, the characters parsers split on, and some others
noise = st.text(alphabet=st.sampled_from(string.printable + ":/@.-_~%\x00é\u202e"), max_size=80)
LOWER_ALNUM = string.ascii_lowercase + string.digits

component = st.builds(
    lambda head, rest: head + "".join(sep + part for sep, part in rest),
    st.text(LOWER_ALNUM, min_size=1, max_size=8),
    st.lists(st.tuples(st.sampled_from([".", "_", "__", "-", "--"]), st.text(LOWER_ALNUM, min_size=1, max_size=6)),
             max_size=3),
)
names = st.lists(component, min_size=1, max_size=4).map("/".join).filter(lambda n: len(n) <= MAX_NAME_LENGTH)
tags = st.builds(lambda a, b: a + b, st.sampled_from(string.ascii_letters + string.digits + "_"),
                 st.text(string.ascii_letters + string.digits + "._-", max_size=127))
digests = st.sampled_from(sorted(DIGEST_ALGORITHMS)).flatmap(
    lambda alg: st.text("0123456789abcdef", min_size=DIGEST_ALGORITHMS[alg], max_size=DIGEST_ALGORITHMS[alg])
    .map(lambda hex_: Digest(alg, hex_)))
offsets = st.integers(min_value=0, max_value=(1 << 62))


def refused(call, code: ErrorCode) -> bool:
    """Whether ``call`` raised the parser's own OCI error (any other exception fails the test)."""
    try:
        call()
    except RegistryError as exc:
        assert exc.code is code, exc
        return True
    return False


# --- repository names -------------------------------------------------------------------------------

@given(names)
def test_grammar_names_are_accepted_and_make_safe_storage_paths(name):
    assert parse_name(name) == name and is_valid_name(name)
    assert is_valid_path(paths.repo(name)) and is_valid_path(paths.tag_current_link(name, "t"))


@given(st.one_of(noise, names.map(lambda n: n.upper()), names.map(lambda n: f"{n}/../x"), names.map(lambda n: f"/{n}")))
def test_any_name_is_accepted_only_if_it_is_in_the_grammar(value):
    if refused(lambda: parse_name(value), ErrorCode.NAME_INVALID):
        assert not is_valid_name(value)
        return
    assert len(value) <= MAX_NAME_LENGTH
    assert all(is_valid_component(part) and not part.startswith((".", "_", "-")) for part in value.split("/"))
    assert value == value.lower() and ".." not in value.split("/")
    assert is_valid_path(paths.repo(value))


# --- tags and references ------------------------------------------------------------------------------

@given(tags)
def test_grammar_tags_round_trip(tag):
    assert parse_tag(tag) == tag and parse_reference(tag) == tag
    assert is_valid_component(tag) and tag not in (".", "..")


@given(st.one_of(noise, tags.map(lambda t: t + ":x"), st.text(max_size=200)))
def test_any_tag_is_accepted_only_if_it_is_a_safe_component(value):
    if refused(lambda: parse_tag(value), ErrorCode.TAG_INVALID):
        assert not is_valid_tag(value)
        return
    assert 1 <= len(value) <= 128 and is_valid_component(value)


@given(st.one_of(noise, tags, digests.map(str)))
def test_a_reference_is_a_tag_a_digest_or_refused(value):
    try:
        ref = parse_reference(value)
    except RegistryError as exc:
        assert exc.code in (ErrorCode.TAG_INVALID, ErrorCode.DIGEST_INVALID)
        assert (exc.code is ErrorCode.DIGEST_INVALID) == (":" in value)
        return
    if ":" in value:
        assert isinstance(ref, Digest) and str(ref) == value
    else:
        assert ref == value and is_valid_tag(value)


# --- digests ------------------------------------------------------------------------------------------

@given(digests)
def test_digests_round_trip(d):
    assert try_digest(str(d)) == d and parse_digest(str(d)) == d
    assert is_valid_path(paths.blob_data(d)) and is_valid_path(paths.revision_link("r", d))
    assert paths.referrer_from_entry(paths.referrer_entry("r", d, d)) == d


@given(st.one_of(noise, digests.map(lambda d: str(d).upper()), digests.map(lambda d: str(d)[:-1]),
                 digests.map(lambda d: str(d) + "0"), digests.map(lambda d: "sha384:" + d.hex)))
def test_any_digest_is_accepted_only_if_supported_and_exact(value):
    d = try_digest(value)
    assert refused(lambda: parse_digest(value), ErrorCode.DIGEST_INVALID) == (d is None)
    if d is not None:
        assert str(d) == value and d.algorithm in DIGEST_ALGORITHMS
        assert len(d.hex) == DIGEST_ALGORITHMS[d.algorithm] and re.fullmatch("[0-9a-f]+", d.hex)


@given(st.one_of(noise, st.sampled_from(sorted(DIGEST_ALGORITHMS))))
def test_digest_algorithm(value):
    if not refused(lambda: parse_digest_algorithm(value), ErrorCode.DIGEST_INVALID):
        assert value in DIGEST_ALGORITHMS


# --- upload ids -----------------------------------------------------------------------------------------

@given(st.one_of(noise, st.uuids().map(str)))
def test_upload_ids_are_single_safe_components(value):
    if refused(lambda: parse_upload_id(value), ErrorCode.BLOB_UPLOAD_UNKNOWN):
        return
    assert is_valid_component(value) and value not in (".", "..")
    assert is_valid_path(paths.upload_data("r", value))


# --- Content-Range of an upload chunk ---------------------------------------------------------------

@given(offsets, st.integers(min_value=0, max_value=1 << 40),
       st.sampled_from(["", "bytes ", "bytes="]), st.sampled_from(["", "/*", "/{}"]), st.integers(1, 1 << 40))
def test_content_range_round_trips(start, length, prefix, suffix, beyond):
    end = start + length
    assume(end + beyond < 10 ** 19)
    assert parse_content_range(f"{prefix}{start}-{end}{suffix.format(end + beyond)}") == (start, end)


@given(st.one_of(noise, st.tuples(offsets, offsets).map(lambda p: f"{p[0]}-{p[1]}")))
def test_any_content_range_is_ordered_or_refused(value):
    try:
        start, end = parse_content_range(value)
    except RegistryError as exc:
        assert exc.code is ErrorCode.RANGE_INVALID
        return
    assert 0 <= start <= end


@given(st.lists(st.binary(min_size=0, max_size=50), max_size=8), st.integers(min_value=1, max_value=300))
def test_a_chunk_body_is_held_to_its_declared_length(pieces, declared):
    """The body check behind Content-Range: exactly ``declared`` bytes pass, anything else is
    refused, and never is a byte beyond ``declared`` handed on."""
    async def source():
        for piece in pieces:
            yield [piece]

    async def run() -> tuple[bytes, RegistryError | None]:
        out = b""
        try:
            async for batch in exactly(source(), declared, f"0-{declared - 1}"):
                out += b"".join(batch)
                assert len(out) <= declared
        except RegistryError as exc:
            return out, exc
        return out, None

    out, error = asyncio.run(run())
    body = b"".join(pieces)
    if len(body) == declared:
        assert error is None and out == body
    else:
        assert error is not None and error.code is ErrorCode.SIZE_INVALID
        assert body.startswith(out) and len(out) < declared


# --- Range of a blob GET ---------------------------------------------------------------------------------

@given(st.integers(min_value=0, max_value=1 << 40), st.data())
def test_byte_ranges_are_in_bounds_or_unsatisfiable(size, data):
    first = data.draw(st.one_of(st.just(""), st.integers(min_value=0, max_value=size * 2 + 2).map(str)))
    last = data.draw(st.one_of(st.just(""), st.integers(min_value=0, max_value=size * 2 + 2).map(str)))
    value = data.draw(st.one_of(st.just(f"bytes={first}-{last}"), noise, st.just(f"bytes={first}-{last},0-1")))
    try:
        rng = parse_byte_range(value, size)
    except RegistryError as exc:
        assert exc.code is ErrorCode.RANGE_INVALID and exc.headers["Content-Range"] == f"bytes */{size}"
        return
    if rng is None:  # several ranges, another unit, a suffix of an empty blob: the whole blob
        assert "," in value or not value.strip().lower().startswith("bytes=") or (size == 0 and first == "")
        return
    start, end = rng
    assert 0 <= start <= end < size
    if value == f"bytes={first}-{last}":
        if first == "":
            assert end == size - 1 and end - start + 1 == min(int(last), size)
        else:
            assert start == int(first) and end == (min(int(last), size - 1) if last else size - 1)


# --- page sizes ---------------------------------------------------------------------------------------------

@given(st.one_of(st.none(), noise, st.integers(min_value=0, max_value=10 ** 25).map(str)), st.integers(1, 10000))
def test_page_size(value, maximum):
    try:
        n = parse_page_size(value, maximum)
    except RegistryError as exc:
        assert exc.code is ErrorCode.PAGINATION_NUMBER_INVALID
        return
    if value is None:
        assert n is None
    else:
        assert n == min(int(value), maximum) and 0 <= n <= maximum


# --- token scopes (names inside: host:port allowed) ------------------------------------------------------

@given(names, st.lists(st.sampled_from(["pull", "push", "delete", "*"]), min_size=1, max_size=3))
def test_repository_scopes_round_trip(name, actions):
    scope = parse_scope(f"repository:{name}:{','.join(actions)}")
    assert (scope.type, scope.name) == ("repository", name)
    assert scope.actions == tuple(dict.fromkeys(actions)) and parse_scope(str(scope)) == scope


@given(names, st.text(LOWER_ALNUM, min_size=1, max_size=8), st.integers(1, 65535))
def test_scopes_with_a_host_in_the_name_are_refused(name, host, port):
    """The name lies between the first and the last ``:``; ``host:port/name`` is no repository name
    of this registry, so it is refused, not misread."""
    with pytest.raises(ScopeError):
        parse_scope(f"repository:{host}:{port}/{name}:pull")


@given(st.lists(noise, max_size=4))
def test_any_scope_text_is_parsed_or_refused(values):
    try:
        scopes = parse_scopes(values)
    except ScopeError:
        return
    for scope in scopes:
        assert scope.actions and ":" not in scope.type
        if scope.type == "repository":
            assert is_valid_name(scope.name)


# --- driver paths ---------------------------------------------------------------------------------------------

@given(st.one_of(noise, st.lists(st.sampled_from(["a", "..", ".", "b-c", "", "~x", "d.e"]), max_size=5)
                 .map(lambda parts: "/" + "/".join(parts))))
def test_driver_paths_never_traverse(value):
    try:
        check_path("test", value)
    except InvalidPath:
        assert not is_valid_path(value)
        return
    parts = value.split("/")
    assert parts[0] == "" and all(is_valid_component(p) for p in parts[1:])
    assert ".." not in parts and "." not in parts and "~" not in value


# --- upload state tokens ------------------------------------------------------------------------------------

STORE = UploadStore.__new__(UploadStore)
STORE._key = b"property-test-secret"


@given(names, st.uuids().map(str), offsets, st.sampled_from(sorted(DIGEST_ALGORITHMS)))
def test_state_tokens_round_trip(repo, upload_id, offset, algorithm):
    session = UploadSession(repo, upload_id, "2024-01-01T00:00:00.000000Z", offset, algorithm)
    back = STORE._unpack(STORE.token(session), repo, upload_id)
    assert (back.repo, back.id, back.size, back.algorithm, back.token_offset) == (repo, upload_id, offset, algorithm,
                                                                                  offset)


@given(names, st.uuids().map(str), st.one_of(noise, st.binary(max_size=120).map(lambda b: b.hex())), st.data())
def test_any_other_state_token_is_refused(repo, upload_id, token, data):
    real = STORE.token(UploadSession(repo, upload_id, "2024-01-01T00:00:00.000000Z", 5))
    flip = data.draw(st.integers(min_value=0, max_value=len(real) - 1))
    tampered = real[:flip] + ("A" if real[flip] != "A" else "B") + real[flip + 1:]
    for candidate in (token, tampered):
        if candidate == real:
            continue
        try:
            back = STORE._unpack(candidate, repo, upload_id)
        except RegistryError as exc:
            assert exc.code is ErrorCode.BLOB_UPLOAD_INVALID
            continue
        # base64 padding bits: a flip that decodes to the same bytes is the same token
        assert back.size == 5 and candidate != token
