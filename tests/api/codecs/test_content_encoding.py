"""Compressed request bodies: gzip and deflate undone within the body limit, the rest refused."""

from __future__ import annotations

import gzip
import zlib

import pytest
from fastapi.testclient import TestClient

from app.api.codecs.body import decoded
from app.errors import ErrorReason, RequestError

BODY = b'{"instances": [[1.5, 2.5, "caf\xc3\xa9"]]}'
LIMIT = 1 << 20


def _gzip(data: bytes) -> bytes:
    """A gzip member stamped with time 0: the same bytes in every test process (the
    parameters below are collected by each xdist worker and must be equal)."""
    return gzip.compress(data, mtime=0)


def _raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


@pytest.mark.parametrize(
    ("header", "sent"),
    [
        ("gzip", _gzip(BODY)),
        ("x-gzip", _gzip(BODY)),
        ("GZip", _gzip(BODY)),
        ("deflate", zlib.compress(BODY)),  # the zlib format, as HTTP defines deflate
        ("deflate", _raw_deflate(BODY)),  # raw deflate, as some clients send it
        ("identity", BODY),
        ("gzip, identity", _gzip(BODY)),
        ("deflate, gzip", _gzip(zlib.compress(BODY))),  # the last applied first
        ("gzip", _gzip(BODY[:10]) + _gzip(BODY[10:])),  # two gzip members
    ],
    ids=["gzip", "x-gzip", "case", "zlib", "raw-deflate", "identity", "gzip-identity",
         "deflate-then-gzip", "two-gzip-members"],
)  # fmt: skip
def test_compressed_body_is_the_body_sent(header: str, sent: bytes) -> None:
    assert decoded(sent, header, LIMIT) == BODY


@pytest.mark.parametrize("coding", ["br", "zstd", "compress", "gzip;q=1"])
def test_other_codings_are_refused_by_name(coding: str) -> None:
    with pytest.raises(RequestError) as caught:
        decoded(b"anything", coding, LIMIT)
    assert caught.value.reason is ErrorReason.UNSUPPORTED_ENCODING
    assert caught.value.field == "content-encoding"
    assert repr(coding) in caught.value.message and "gzip, deflate" in caught.value.message


@pytest.mark.parametrize(
    ("header", "sent"),
    [
        ("gzip", BODY),  # not compressed at all
        ("gzip", _gzip(BODY)[:-12]),  # cut short
        ("deflate", zlib.compress(BODY)[:-6]),
        ("gzip", _gzip(BODY) + b"trailing bytes"),
        ("gzip", b""),
    ],
    ids=["not-compressed", "gzip-cut-short", "zlib-cut-short", "trailing-bytes", "empty"],
)
def test_broken_compressed_body_is_a_400_naming_the_coding(header: str, sent: bytes) -> None:
    with pytest.raises(RequestError) as caught:
        decoded(sent, header, LIMIT)
    assert caught.value.reason is ErrorReason.INVALID_ENCODING
    assert caught.value.field == "body" and header in caught.value.message


@pytest.mark.parametrize("header", ["gzip", "deflate"])
def test_decompressed_size_is_bounded_by_the_body_limit(header: str) -> None:
    bomb = b" " * (64 * LIMIT)  # 64 MiB of spaces: about 64 KiB compressed
    sent = _gzip(bomb) if header == "gzip" else zlib.compress(bomb)
    assert len(sent) < LIMIT
    with pytest.raises(RequestError) as caught:
        decoded(sent, header, LIMIT)
    assert caught.value.reason is ErrorReason.BODY_TOO_LARGE
    assert decoded(_gzip(b" " * LIMIT), "gzip", LIMIT) == b" " * LIMIT  # at the limit


def test_routes_answer_compressed_bodies_and_refuse_unknown_codings(client: TestClient) -> None:
    body = b'{"instances": [[' + b", ".join([b"0.5"] * 30) + b"]]}"
    plain = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert plain.status_code == 200
    for route in ("/predict", "/models/breast-cancer/invocations"):
        got = client.post(
            route,
            content=_gzip(body),
            headers={"content-type": "application/json", "content-encoding": "gzip"},
        )
        assert got.status_code == 200, got.text
        assert got.json()["predictions"] == plain.json()["predictions"]
    refused = client.post("/predict", content=body, headers={"content-encoding": "br"})
    assert refused.status_code == 415
    assert refused.json()["error"]["type"] == "unsupported_encoding"
