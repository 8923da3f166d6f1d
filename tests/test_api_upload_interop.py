"""An upload started on one registry continues on the other (shared storage and http.secret):
our state token and hash states have the reference's formats."""

from __future__ import annotations

import hashlib
import os

import pytest


@pytest.mark.parametrize("first", ["ours", "reference"])
def test_upload_continues_across_registries(our_registry, reference_registry, first):
    regs = {"ours": our_registry.client, "reference": reference_registry.client}
    a, b = regs[first], regs["reference" if first == "ours" else "ours"]
    data = os.urandom(3_000_000)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    repo = f"interop/upload-from-{first}"
    r = a.request("POST", f"/v2/{repo}/blobs/uploads/")
    assert r.status == 202
    octet = {"Content-Type": "application/octet-stream"}
    r = a.request("PATCH", r.header("Location"), body=data[:1_000_000], headers=octet)
    assert r.status == 202 and r.header("Range") == "0-999999"
    r = b.request("PATCH", r.header("Location"), body=data[1_000_000:2_000_000], headers=octet)
    assert r.status == 202 and r.header("Range") == "0-1999999", r.body
    r = a.request("PUT", r.header("Location"), query={"digest": digest}, body=data[2_000_000:], headers=octet)
    assert r.status == 201, r.body
    for client in (a, b):
        got = client.request("GET", f"/v2/{repo}/blobs/{digest}")
        assert got.status == 200 and got.body == data
