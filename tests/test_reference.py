"""Unit tests of the grammar module (registry/reference.py): every boundary pinned by number, each
refusal by its exact OCI error code and HTTP status; then property tests that build valid inputs and
near misses from the spec's own grammar (written out here independently of the module) and compare
the parser's verdict with an oracle.

Sources of the right answers: the OCI distribution spec (names, tags, the PATCH ``Content-Range``
``^[0-9]+-[0-9]+$``, pagination), the image spec's digest grammar (sha256: 64 lower hex, sha512:
128), RFC 9110 section 14 (Range: unit case-insensitive and an unknown unit ignored, suffix and
open ranges, satisfiability, Content-Range's complete length greater than last-pos).
"""

from __future__ import annotations

import re
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from registry.errors import ErrorCode, RegistryError
from registry.reference import (
    Digest,
    is_valid_name,
    is_valid_tag,
    looks_like_digest,
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

HEX64 = "0123456789abcdef" * 4
HEX128 = HEX64 * 2
SHA256 = f"sha256:{HEX64}"
SHA512 = f"sha512:{HEX128}"


def refusal(call, *args, code: ErrorCode, status: int) -> RegistryError:
    with pytest.raises(RegistryError) as info:
        call(*args)
    assert info.value.code is code and info.value.status == status, info.value
    return info.value


# --- repository names -----------------------------------------------------------------------------------

def name_of_length(n: int) -> str:
    """A valid name of exactly ``n`` characters: components of 9 letters joined by ``/``."""
    parts, left = [], n
    while left > 0:
        take = min(9, left) if left != 10 else 8  # never leave a lone trailing "/"
        parts.append("a" * take)
        left -= take + 1
    name = "/".join(parts)
    assert len(name) == n
    return name


@pytest.mark.parametrize("length", [1, 2, 254, 255])
def test_a_name_of_up_to_255_characters_is_accepted(length):
    name = name_of_length(length)
    assert is_valid_name(name) and parse_name(name) == name


@pytest.mark.parametrize("name", [name_of_length(256), "a" * 256, "a" * 1000])
def test_a_name_of_256_characters_or_more_is_refused(name):
    assert not is_valid_name(name)
    error = refusal(parse_name, name, code=ErrorCode.NAME_INVALID, status=400)
    assert error.detail == {"name": name if len(name) <= 300 else name[:300] + "..."}


@pytest.mark.parametrize("name", [
    "a", "0", "a0", "library/ubuntu", "a/b/c/d/e/f", "a.b", "a_b", "a__b", "a-b", "a--b", "a---------b",
    "a.b_c__d-e--f", "0.0/1_1/2__2/3-3", "x1/y-2.z_3",
])
def test_names_of_the_grammar_are_accepted(name):
    assert is_valid_name(name) and parse_name(name) == name


@pytest.mark.parametrize("name", [
    "", "A", "Library/ubuntu", "library/Ubuntu", "aB",  # uppercase anywhere
    ".a", "_a", "-a", "__a", "a.", "a_", "a-", "a__", "a/.b", "a/b-",  # leading or trailing separators
    "a..b", "a___b", "a._b", "a_.b", "a-.b", "a.-b", "a-_b", "a+b", "a~b", "a:b", "a@b", "a b", "a%b",  # separators
    "/a", "a/", "a//b", "/", "a/../b", "..", ".", "a/./b",  # path components
    "a\n", "a\nb", "\na", "a\r", "a\x00", "é", "ａ",  # a trailing newline, controls, non-ASCII
])
def test_names_outside_the_grammar_are_refused(name):
    assert not is_valid_name(name)
    error = refusal(parse_name, name, code=ErrorCode.NAME_INVALID, status=400)
    assert error.detail == {"name": name}


@pytest.mark.parametrize("value", [None, 5, b"abc", ["a"]])
def test_a_name_that_is_no_string_is_invalid_not_an_exception(value):
    assert is_valid_name(value) is False
    refusal(parse_name, value, code=ErrorCode.NAME_INVALID, status=400)


def test_an_error_detail_is_cut_after_300_characters():
    """Long inputs are echoed in an error's detail only up to 300 characters."""
    assert refusal(parse_name, "A" * 300, code=ErrorCode.NAME_INVALID, status=400).detail == {"name": "A" * 300}
    assert refusal(parse_name, "A" * 301, code=ErrorCode.NAME_INVALID, status=400).detail == {
        "name": "A" * 300 + "..."}


# --- tags -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("tag", ["a", "A", "0", "_", "_a", "latest", "v1.2.3", "1.0-rc_1", "a.", "a-", "a..b",
                                 "Z" + "-" * 127, "a" * 127, "a" * 128, "_" * 128, "0" + "." * 127])
def test_tags_of_the_grammar_up_to_128_characters_are_accepted(tag):
    assert is_valid_tag(tag) and parse_tag(tag) == tag and parse_reference(tag) == tag


@pytest.mark.parametrize("tag", ["", "a" * 129, "_" * 129, "Z" + "-" * 128, ".a", "-a", ".", "..", "a:b", "a/b",
                                 "a b", "a+b", "a@b", "a~b", "latest\n", "\nlatest", "a\x00", "é", "tag%21"])
def test_tags_outside_the_grammar_are_refused(tag):
    assert not is_valid_tag(tag)
    error = refusal(parse_tag, tag, code=ErrorCode.TAG_INVALID, status=400)
    assert error.detail == {"tag": tag} and error.message == "invalid tag"
    if ":" not in tag:  # a reference with ``:`` is a digest (below)
        error = refusal(parse_reference, tag, code=ErrorCode.TAG_INVALID, status=400)
        assert error.detail == {"reference": tag} and error.message == "invalid manifest reference"


@pytest.mark.parametrize("value", [None, 1, b"latest"])
def test_a_tag_that_is_no_string_is_invalid(value):
    assert is_valid_tag(value) is False
    refusal(parse_tag, value, code=ErrorCode.TAG_INVALID, status=400)


# --- digests and references ---------------------------------------------------------------------------------

@pytest.mark.parametrize("value, algorithm", [(SHA256, "sha256"), (SHA512, "sha512"),
                                              ("sha256:" + "0" * 64, "sha256"), ("sha512:" + "f" * 128, "sha512")])
def test_supported_digests_are_parsed(value, algorithm):
    d = try_digest(value)
    assert d == Digest(algorithm, value.split(":")[1]) and str(d) == value
    assert parse_digest(value) == d and parse_reference(value) == d


@pytest.mark.parametrize("value", [
    "sha256:" + HEX64[:63], "sha256:" + HEX64 + "0", "sha256:" + HEX128, "sha256:",  # sha256 is 64 hex exactly
    "sha512:" + HEX128[:127], "sha512:" + HEX128 + "0", "sha512:" + HEX64,  # sha512 is 128 exactly
    "sha256:" + HEX64.upper(), "sha256:" + HEX64[:63] + "A", "sha512:" + "F" * 128,  # uppercase hex
    "sha256:" + "X" * 64, "sha256:" + HEX64[:63] + "g", "sha256:" + HEX64[:63] + "=", "sha256:" + HEX64[:63] + "_",  # encoded, not hex
    "sha256:" + HEX64[:63] + ":", "sha256:" + HEX64[:63] + "\n", "sha256:" + HEX64 + "\n",  # a trailing newline
    "SHA256:" + HEX64, "Sha256:" + HEX64, " sha256:" + HEX64, "sha256 :" + HEX64,  # algorithm spelled otherwise
    "sha384:" + "0" * 96, "md5:" + "0" * 32, "sha1:" + "0" * 40, "blake3:" + HEX64,  # unknown algorithms
    "sha256+b64u:" + HEX64, "multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TUBDTHJD8",  # well-formed, unknown
    "sha256-" + HEX64, "sha256" + HEX64, ":" + HEX64, HEX64, "", ":", "sha256::" + HEX64,
])
def test_other_digests_are_refused_with_digest_invalid(value):
    assert try_digest(value) is None
    error = refusal(parse_digest, value, code=ErrorCode.DIGEST_INVALID, status=400)
    assert error.detail == {"digest": value}
    if looks_like_digest(value):
        refusal(parse_reference, value, code=ErrorCode.DIGEST_INVALID, status=400)


@pytest.mark.parametrize("value", [None, 1, b"sha256:" + HEX64.encode(), ["sha256", HEX64]])
def test_a_digest_that_is_no_string_is_none(value):
    assert try_digest(value) is None


def test_parse_digest_raises_the_code_it_is_given():
    """Callers choose the code (a mount's ``from``, a manifest's blob: BLOB_UNKNOWN...)."""
    refusal(parse_digest, "sha256:x", ErrorCode.BLOB_UNKNOWN, code=ErrorCode.BLOB_UNKNOWN, status=404)


def test_digests_are_values():
    """Hashable and immutable (they key sets and dicts), equal by content."""
    d = try_digest(SHA256)
    assert {d, parse_digest(SHA256)} == {Digest("sha256", HEX64)}
    with pytest.raises(AttributeError):
        d.hex = "0"  # type: ignore[misc]


def test_digests_order_by_algorithm_then_hex():
    assert sorted([Digest("sha512", "0"), Digest("sha256", "b"), Digest("sha256", "a")]) == [
        Digest("sha256", "a"), Digest("sha256", "b"), Digest("sha512", "0")]


@pytest.mark.parametrize("value", ["sha256", "sha512"])
def test_supported_digest_algorithms(value):
    assert parse_digest_algorithm(value) == value


@pytest.mark.parametrize("value", ["", "SHA256", "sha384", "md5", "sha256 ", "sha256:", "sha"])
def test_unsupported_digest_algorithms_are_refused(value):
    error = refusal(parse_digest_algorithm, value, code=ErrorCode.DIGEST_INVALID, status=400)
    assert error.detail == {"algorithm": value, "supported": ["sha256", "sha512"]}


@pytest.mark.parametrize("value, expected", [(":", True), ("a:b", True), (SHA256, True), ("latest", False),
                                             ("", False), ("sha256" + HEX64, False)])
def test_looks_like_digest_is_the_presence_of_a_colon(value, expected):
    assert looks_like_digest(value) is expected


def test_a_reference_with_a_colon_is_judged_as_a_digest_only():
    """``a:b`` is no tag (tags never hold ``:``): DIGEST_INVALID, not TAG_INVALID."""
    for value in ("a:b", "latest:", ":latest", "sha256:" + HEX64.upper()):
        refusal(parse_reference, value, code=ErrorCode.DIGEST_INVALID, status=400)
    assert isinstance(parse_reference(SHA512), Digest) and parse_reference("sha256") == "sha256"


# --- upload ids -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["a", "A", "0", "_", "-", "-a", "_a.b", "0a1b2c3d-0000-4000-8000-000000000000",
                                   "a" * 127, "a" * 128, "-" + "." * 127, "a.", "a..b"])
def test_upload_ids_up_to_128_characters_are_accepted(value):
    assert parse_upload_id(value) == value


@pytest.mark.parametrize("value", ["", "a" * 129, "-" + "." * 128, ".", "..", ".a", "a/b", "a b", "a:b", "a%2Fb",
                                   "a\n", "\na", "a\x00", "é", "a+b", "a~b"])
def test_other_upload_ids_are_unknown_uploads(value):
    error = refusal(parse_upload_id, value, code=ErrorCode.BLOB_UPLOAD_UNKNOWN, status=404)
    assert error.detail == {"uuid": value}


def test_an_upload_id_that_is_no_string_is_unknown():
    refusal(parse_upload_id, None, code=ErrorCode.BLOB_UPLOAD_UNKNOWN, status=404)


# --- Content-Range of an upload PATCH -----------------------------------------------------------------------

MAX19 = "9" * 19


@pytest.mark.parametrize("value, expected", [
    ("0-0", (0, 0)), ("5-5", (5, 5)), ("0-1", (0, 1)), ("10-19", (10, 19)),  # a one-byte chunk: 5-5
    ("bytes 0-9", (0, 9)), ("bytes=0-9", (0, 9)),  # the unit tolerated, with a space or "="
    ("0-9/10", (0, 9)), ("bytes 0-9/10", (0, 9)), ("0-9/*", (0, 9)), ("bytes 0-9/*", (0, 9)),  # a total
    (f"0-{MAX19}", (0, 10 ** 19 - 1)), (f"{MAX19}-{MAX19}", (10 ** 19 - 1,) * 2),  # 19 digits
    (f"0-1/{MAX19}", (0, 1)), ("007-010", (7, 10)), (" 0-9 ", (0, 9)),
])
def test_content_ranges_are_parsed(value, expected):
    assert parse_content_range(value) == expected


@pytest.mark.parametrize("value", [
    "", "-", "0", "0-", "-1", "-1-5", "5-1", "1-0", "1-2-3", "a-b", "0x1-2", "+1-2", "0 - 1",  # not start-end
    "0-1/", "0-1/abc", "0-1/-1", "0-1 /2", "0-1/2/3", "0-1/**",  # an empty or malformed total
    "0-9/9", "0-9/5", "0-9/0", "5-5/5",  # a complete length not above the last byte (RFC 9110 14.4)
    "0-1x", "0-1 junk", "x0-1", "0-1\n2", "0-1;", "0-1,2-3",  # trailing or leading junk
    "bytes0-1", "bytes  0-1", "bytes:0-1", "Bytes 0-1", "BYTES=0-1", "bits 0-1", "bytes */10",  # units
    "1" * 20 + "-" + "1" * 20, "0-" + "1" * 20, "1" * 20 + "-" + "9" * 19, "0-1/" + "1" * 20,  # 20 digits
    "٣-٤", "０-１", "¹-²",  # digits that are not ASCII
])
def test_other_content_ranges_are_range_invalid(value):
    error = refusal(parse_content_range, value, code=ErrorCode.RANGE_INVALID, status=416)
    assert error.detail == {"Content-Range": value}


def test_a_content_range_that_is_no_string_is_range_invalid():
    refusal(parse_content_range, None, code=ErrorCode.RANGE_INVALID, status=416)


# --- Range of a blob GET (RFC 9110 section 14) ---------------------------------------------------------------

@pytest.mark.parametrize("value, size, expected", [
    ("bytes=0-0", 10, (0, 0)), ("bytes=0-9", 10, (0, 9)), ("bytes=9-9", 10, (9, 9)), ("bytes=3-", 10, (3, 9)),
    ("bytes=0-", 10, (0, 9)), ("bytes=9-", 10, (9, 9)), ("bytes=0-", 1, (0, 0)),
    ("bytes=2-100", 10, (2, 9)), ("bytes=0-10", 10, (0, 9)),  # an end past the blob is clipped
    ("bytes=-1", 10, (9, 9)), ("bytes=-10", 10, (0, 9)), ("bytes=-11", 10, (0, 9)),  # suffix ranges
    ("bytes=-1000", 10, (0, 9)), ("bytes=-1", 1, (0, 0)),  # a suffix longer than the blob: all of it
    ("Bytes=1-2", 10, (1, 2)), ("BYTES=-2", 10, (8, 9)),  # the unit is case-insensitive
    (" bytes=1-2 ", 10, (1, 2)), ("bytes=001-0002", 10, (1, 2)),
    (f"bytes=0-{MAX19}", 10, (0, 9)), ("bytes=0-" + "9" * 20, 10, (0, 9)),  # long last-pos: to the end
    ("bytes=-" + "9" * 25, 10, (0, 9)), ("bytes=" + "0" * 30 + "1-" + "0" * 30 + "2", 10, (1, 2)),
    ("bytes=5-" + "9" * 5000, 10, (5, 9)),  # no huge integer is built (int() refuses > 4300 digits)
    # the largest blob a signed 64-bit size allows: 19-digit positions are exact
    ("bytes=1000000000000000000-", 2 ** 63 - 1, (10 ** 18, 2 ** 63 - 2)),
    ("bytes=9223372036854775805-9223372036854775805", 2 ** 63 - 1, (2 ** 63 - 3,) * 2),
    ("bytes=-1000000000000000000", 2 ** 63 - 1, (2 ** 63 - 1 - 10 ** 18, 2 ** 63 - 2)),
    ("bytes=0-" + "9" * 20, 2 ** 63 - 1, (0, 2 ** 63 - 2)), ("bytes=-" + "9" * 20, 2 ** 63 - 1, (0, 2 ** 63 - 2)),
])
def test_byte_ranges_are_parsed_and_clipped(value, size, expected):
    assert parse_byte_range(value, size) == expected


@pytest.mark.parametrize("value, size", [
    ("bytes=10-", 10), ("bytes=10-20", 10), ("bytes=11-11", 10),  # starting at or past the size
    ("bytes=0-", 0), ("bytes=0-0", 0), ("bytes=0-5", 0),  # an empty blob has no first byte
    ("bytes=5-4", 10), ("bytes=1-0", 10),  # end before start
    ("bytes=-0", 10), ("bytes=-0", 0), ("bytes=-000", 10),  # an empty suffix
    ("bytes=-", 10), ("bytes=-", 0), ("bytes=", 10), ("bytes", 10),  # neither position
    ("bytes=abc", 10), ("bytes=a-1", 10), ("bytes=1-a", 10), ("bytes=--1", 10), ("bytes=1--2", 10),
    ("bytes=0x1-2", 10), ("bytes= 1-2", 10), ("bytes=1-2 x", 10), ("bytes=+1-2", 10), ("bytes=1-2-3", 10),
    ("bytes=٣-٤", 10), ("bytes=-٣", 10),  # digits that are not ASCII
    ("bytes=" + "1" * 20 + "-", 10), ("bytes=18446744073709551616-", 10 ** 12),  # a start beyond any blob
    ("bytes=" + "1" * 20 + "-", 2 ** 63 - 1), ("bytes=9223372036854775807-", 2 ** 63 - 1),
])
def test_unsatisfiable_or_malformed_byte_ranges_are_416_with_the_size(value, size):
    error = refusal(parse_byte_range, value, size, code=ErrorCode.RANGE_INVALID, status=416)
    assert error.headers == {"Content-Range": f"bytes */{size}"} and error.detail == {"Range": value}


@pytest.mark.parametrize("value, size", [
    ("bytes=0-1,3-4", 10), ("bytes=0-1, 5-", 10), ("bytes=-1,-2", 10), ("bytes=,", 10),  # several ranges
    ("bytes=20-30,40-50", 10), ("BYTES=0-1,2-3", 10),
    ("items=0-1", 10), ("lines=0-1", 10), ("byte=0-1", 10), ("bytesx=0-1", 10), ("=0-1", 10),  # other units
    ("bytes =0-1", 10), ("0-1", 10), ("", 10), ("none", 10),
    ("bytes=-5", 0), ("bytes=-1", 0),  # a suffix of an empty blob: satisfiable, the whole (empty) blob
])
def test_ranges_the_registry_ignores_get_the_whole_blob(value, size):
    """RFC 9110 14.2: a Range with a unit other than bytes MUST be ignored; several ranges MAY be."""
    assert parse_byte_range(value, size) is None


def test_a_range_that_is_no_string_is_ignored():
    assert parse_byte_range(None, 5) is None


# --- page sizes (``n``) ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, maximum, expected", [
    (None, 100, None), ("0", 100, 0), ("1", 100, 1), ("99", 100, 99), ("100", 100, 100), ("101", 100, 100),
    ("007", 100, 7), (MAX19, 100, 100), (MAX19, 10 ** 20, 10 ** 19 - 1), ("1" + "0" * 18, 10 ** 20, 10 ** 18),
])
def test_page_sizes_are_capped_at_the_maximum(value, maximum, expected):
    assert parse_page_size(value, maximum) == expected


@pytest.mark.parametrize("value", ["", "-1", "-0", "+5", " 5", "5 ", "1e3", "0x10", "1.0", "abc", "5a",
                                   "1" * 20, "0" * 20, "9" * 25, "٣", "５", "²"])
def test_other_page_sizes_are_pagination_number_invalid(value):
    error = refusal(parse_page_size, value, 100, code=ErrorCode.PAGINATION_NUMBER_INVALID, status=400)
    assert error.detail == {"n": value}


# --- property tests: the parser against an oracle written from the spec -----------------------------------------

PROPS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# the grammars as the specs write them (not the module's constants)
SPEC_NAME = re.compile(r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*")
SPEC_TAG = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
SPEC_DIGEST = re.compile(r"[a-z0-9]+([+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
REGISTERED = {"sha256": re.compile(r"[a-f0-9]{64}"), "sha512": re.compile(r"[a-f0-9]{128}")}
SPEC_UPLOAD_RANGE = re.compile(r"[0-9]+-[0-9]+")


def oracle_name(value: str) -> bool:
    return len(value) <= 255 and SPEC_NAME.fullmatch(value) is not None


def oracle_tag(value: str) -> bool:
    return SPEC_TAG.fullmatch(value) is not None


def oracle_digest(value: str) -> bool:
    if SPEC_DIGEST.fullmatch(value) is None:
        return False
    algorithm, encoded = value.split(":", 1)
    return algorithm in REGISTERED and REGISTERED[algorithm].fullmatch(encoded) is not None


def oracle_upload_id(value: str) -> bool:
    """A single storage path component of at most 128 characters, not starting with a dot."""
    allowed = set(string.ascii_letters + string.digits + "._-")
    return 1 <= len(value) <= 128 and set(value) <= allowed and not value.startswith(".")


LOWER = string.ascii_lowercase + string.digits
component = st.builds(
    lambda head, rest: head + "".join(sep + part for sep, part in rest),
    st.text(LOWER, min_size=1, max_size=12),
    st.lists(st.tuples(st.sampled_from([".", "_", "__"]) | st.integers(1, 4).map(lambda k: "-" * k),
                       st.text(LOWER, min_size=1, max_size=8)), max_size=4),
)
spec_names = st.lists(component, min_size=1, max_size=30).map("/".join)
spec_tags = st.builds(lambda a, b: a + b, st.sampled_from(string.ascii_letters + string.digits + "_"),
                      st.text(string.ascii_letters + string.digits + "._-", max_size=135))
#: the characters a near miss is made of: the grammars' own, their neighbours, and some others
NEAR = "aZ09._-/:+=@ ~%*,\n\x00é٣"


@st.composite
def near_miss(draw, valid, limit: int = 0):
    """A valid value changed by one character (replaced, inserted or dropped), or grown to about
    ``limit`` characters (one under to two over) with its own characters."""
    value = draw(valid)
    i = draw(st.integers(0, len(value)))
    c = draw(st.sampled_from(NEAR))
    how = draw(st.sampled_from(["replace", "insert", "drop"] + (["longer"] if limit else [])))
    if how == "replace" and i < len(value):
        return value[:i] + c + value[i + 1:]
    if how == "drop" and i < len(value):
        return value[:i] + value[i + 1:]
    if how == "longer" and value:
        wanted = draw(st.integers(limit - 1, limit + 2))
        return value + "".join(draw(st.sampled_from(value)) for _ in range(max(0, wanted - len(value))))
    return value[:i] + c + value[i:]


@PROPS
@given(st.one_of(spec_names, near_miss(spec_names, 255)))
def test_names_agree_with_the_spec_grammar(value):
    expected = oracle_name(value)
    assert is_valid_name(value) is expected
    if expected:
        assert parse_name(value) == value
    else:
        refusal(parse_name, value, code=ErrorCode.NAME_INVALID, status=400)


@PROPS
@given(st.one_of(spec_tags, near_miss(spec_tags, 128)))
def test_tags_agree_with_the_spec_grammar(value):
    expected = oracle_tag(value)
    assert is_valid_tag(value) is expected
    if expected:
        assert parse_tag(value) == value and parse_reference(value) == value
    else:
        refusal(parse_tag, value, code=ErrorCode.TAG_INVALID, status=400)


spec_algorithms = st.one_of(
    st.sampled_from(["sha256", "sha512"]),
    st.builds(lambda a, rest: a + "".join(s + p for s, p in rest), st.text(LOWER, min_size=1, max_size=8),
              st.lists(st.tuples(st.sampled_from("+._-"), st.text(LOWER, min_size=1, max_size=5)), max_size=2)))
spec_digests = st.one_of(
    st.sampled_from([64, 128]).flatmap(lambda n: st.text("0123456789abcdef", min_size=n, max_size=n)).flatmap(
        lambda hex_: st.sampled_from(["sha256", "sha512"]).map(lambda alg: f"{alg}:{hex_}")),
    st.builds(lambda alg, enc: f"{alg}:{enc}", spec_algorithms,
              st.text(string.ascii_letters + string.digits + "=_-", min_size=1, max_size=130)),
)


@PROPS
@given(st.one_of(spec_digests, near_miss(spec_digests)))
def test_digests_agree_with_the_spec_grammar_and_the_registered_algorithms(value):
    expected = oracle_digest(value)
    d = try_digest(value)
    assert (d is not None) is expected
    if expected:
        assert str(d) == value and parse_digest(value) == d and parse_reference(value) == d
    else:
        refusal(parse_digest, value, code=ErrorCode.DIGEST_INVALID, status=400)


spec_upload_ids = st.one_of(
    st.uuids().map(str),
    st.builds(lambda a, b: a + b, st.sampled_from(string.ascii_letters + string.digits + "_-"),
              st.text(string.ascii_letters + string.digits + "._-", max_size=135)))


@PROPS
@given(st.one_of(spec_upload_ids, near_miss(spec_upload_ids, 128)))
def test_upload_ids_agree_with_the_oracle(value):
    if oracle_upload_id(value):
        assert parse_upload_id(value) == value
    else:
        refusal(parse_upload_id, value, code=ErrorCode.BLOB_UPLOAD_UNKNOWN, status=404)


def oracle_content_range(value: str) -> tuple[int, int] | None:
    """The spec's ``^[0-9]+-[0-9]+$`` with our tolerances: a ``bytes `` or ``bytes=`` unit, a
    ``/total`` greater than the end or ``/*``, and numbers of at most 19 digits."""
    text = value.strip()
    for unit in ("bytes ", "bytes="):
        if text.startswith(unit):
            text = text[len(unit):]
            break
    text, slash, total = text.partition("/")
    if SPEC_UPLOAD_RANGE.fullmatch(text) is None:
        return None
    first, last = text.split("-")
    if len(first) > 19 or len(last) > 19 or int(last) < int(first):
        return None
    if slash and total != "*" and not (total.isascii() and total.isdigit() and len(total) <= 19
                                       and int(total) > int(last)):
        return None
    return int(first), int(last)


positions = st.one_of(st.integers(0, 10 ** 6), st.integers(10 ** 18, 10 ** 20), st.just(10 ** 19 - 1)).map(str)
spec_content_ranges = st.builds(
    lambda unit, a, b, total: f"{unit}{a}-{b}{total}", st.sampled_from(["", "bytes ", "bytes="]), positions, positions,
    st.one_of(st.just(""), st.just("/*"), positions.map(lambda p: "/" + p)))


@PROPS
@given(st.one_of(spec_content_ranges, near_miss(spec_content_ranges)))
def test_content_ranges_agree_with_the_oracle(value):
    expected = oracle_content_range(value)
    if expected is None:
        refusal(parse_content_range, value, code=ErrorCode.RANGE_INVALID, status=416)
    else:
        assert parse_content_range(value) == expected


def oracle_byte_range(value: str, size: int) -> tuple[int, int] | None | str:
    """RFC 9110 section 14 with Python's unbounded integers: (first, last), None for "the whole
    blob" (another unit, several ranges, a suffix of an empty blob), "416" otherwise."""
    text = value.strip()
    unit, eq, spec = text.partition("=")
    if unit.lower() != "bytes":
        return None
    if not eq:
        return "416"
    if "," in spec:
        return None
    first, dash, last = spec.partition("-")
    digits = set(string.digits)
    if not dash or not set(first) <= digits or not set(last) <= digits or (first == last == ""):
        return "416"
    if first == "":
        n = int(last)
        if n == 0:
            return "416"
        return None if size == 0 else (max(0, size - n), size - 1)
    a = int(first)
    b = int(last) if last else size - 1
    if a >= size or b < a:
        return "416"
    return a, min(b, size - 1)


@st.composite
def byte_ranges(draw):
    size = draw(st.one_of(st.integers(0, 3), st.integers(0, 10 ** 6), st.just(2 ** 63 - 1)))
    near = st.one_of(st.integers(0, 3), st.integers(max(0, size - 2), size + 2), st.integers(0, 2 * size + 2),
                     st.integers(10 ** 18, 10 ** 21)).map(str)
    pos = st.one_of(st.just(""), near)
    value = draw(st.builds(lambda unit, a, b, more: f"{unit}{a}-{b}{more}",
                           st.sampled_from(["bytes="] * 5 + ["Bytes=", "items=", "bytes"]), pos, pos,
                           st.sampled_from([""] * 6 + [",0-1", ", -5"])))
    return draw(st.one_of(st.just(value), near_miss(st.just(value)))), size


@PROPS
@given(byte_ranges())
def test_byte_ranges_agree_with_rfc_9110(case):
    value, size = case
    expected = oracle_byte_range(value, size)
    if expected == "416":
        error = refusal(parse_byte_range, value, size, code=ErrorCode.RANGE_INVALID, status=416)
        assert error.headers == {"Content-Range": f"bytes */{size}"}
    else:
        assert parse_byte_range(value, size) == expected


@PROPS
@given(st.one_of(st.integers(0, 10 ** 21).map(str), st.integers(0, 10 ** 21).map(lambda i: f"{i:025d}"),
                 near_miss(st.integers(0, 10 ** 19).map(str))), st.integers(0, 10 ** 20))
def test_page_sizes_agree_with_the_oracle(value, maximum):
    if len(value) <= 19 and value != "" and set(value) <= set(string.digits):
        assert parse_page_size(value, maximum) == min(int(value), maximum)
    else:
        refusal(parse_page_size, value, maximum, code=ErrorCode.PAGINATION_NUMBER_INVALID, status=400)
