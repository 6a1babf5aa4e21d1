"""The error vocabulary quotes a client's values cut to a bounded length, with their size, and
bounds every message and field whatever its source (issue #26, point 3)."""

from __future__ import annotations

import orjson
import pytest

from app.errors import (
    MAX_FIELD_CHARS,
    MAX_MESSAGE_CHARS,
    QUOTE_CHARS,
    ErrorReason,
    RequestError,
    bounded,
    clip,
    describe_value,
    error_json,
    quote,
    short_repr,
)

MB = 1024 * 1024
BIG = "x" * MB


def test_a_short_string_is_quoted_whole() -> None:
    assert quote("basic") == "'basic'"
    assert describe_value("basic") == "the string 'basic'"
    assert clip("basic") == "basic"


def test_a_long_string_is_cut_to_its_first_characters_and_its_size() -> None:
    assert quote(BIG) == f"{'x' * QUOTE_CHARS!r}... (1048576 bytes)"
    assert describe_value(BIG) == f"the string {'x' * QUOTE_CHARS!r}... (1048576 bytes)"
    assert clip(BIG) == "x" * QUOTE_CHARS + "... (1048576 bytes)"


def test_the_size_is_in_utf8_bytes() -> None:
    assert quote("é" * 100).endswith("... (200 bytes)")
    assert clip("\ud800" * 100).endswith("... (300 bytes)")  # a lone surrogate, from JSON


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (list(range(10_000)), "[0, 1, 2, 3, 4, 5, ...]"),
        ({"a" * MB: 1}, "aaa...aaa"),
        ([[BIG]], "..."),
        (1.5, "1.5"),
        (None, "None"),
    ],
)
def test_any_value_is_quoted_in_a_few_hundred_characters(value: object, says: str) -> None:
    text = short_repr(value)
    assert says in text
    assert len(text) <= 4 * QUOTE_CHARS + 32


def test_an_int_too_long_to_print_is_named_by_its_type() -> None:
    assert short_repr(10**5000) == "a int"


def test_a_request_error_bounds_its_message_and_field() -> None:
    exc = RequestError(ErrorReason.INVALID_VALUE, "bad: " + BIG, field="instances[0]." + BIG)
    assert len(exc.message) == MAX_MESSAGE_CHARS
    assert exc.message.startswith("bad: xxx") and exc.message.endswith("... (1048581 bytes)")
    assert str(exc) == exc.message
    assert exc.field is not None and len(exc.field) == MAX_FIELD_CHARS
    assert exc.field.startswith("instances[0].xxx")


def test_a_text_bounded_once_is_bounded_as_it_is() -> None:
    once = bounded(BIG, 100)
    assert len(once) == 100 and once.endswith("x... (1048576 bytes)")
    assert bounded(once, 100) == once
    assert bounded("short", 100) == "short"


def test_an_error_body_is_a_few_kb_whatever_its_message() -> None:
    body = error_json(422, "invalid_request", BIG + BIG, field=BIG)
    assert len(body) < MAX_MESSAGE_CHARS + MAX_FIELD_CHARS + 100
    error = orjson.loads(body)["error"]
    assert error["message"].endswith("... (2097152 bytes)")
    assert error["field"].endswith("... (1048576 bytes)")
    # the worst case: control characters, each escaped by JSON as six bytes
    assert len(error_json(422, "invalid_request", "\x01" * MB, "\x01" * MB)) < 8 * 1024
