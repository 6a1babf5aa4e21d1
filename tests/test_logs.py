"""The text log format writes every record as exactly one line, whatever a client sent."""

from __future__ import annotations

import logging
import sys
import unicodedata

from app.logs import JsonFormatter, TextFormatter, one_line

LINE_BREAKING = {"Cc", "Zl", "Zp"}
EVERY_CONTROL = "".join(
    chr(c) for c in range(0x3000) if unicodedata.category(chr(c)) in LINE_BREAKING
)


def _record(message: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("modelserve.access", logging.INFO, __file__, 1, message, (), None)
    record.__dict__.update(extra)
    return record


def _format(record: logging.LogRecord) -> str:
    return TextFormatter("%(asctime)s %(levelname)s %(name)s %(message)s").format(record)


def test_every_control_character_is_escaped_in_messages_and_extras() -> None:
    line = _format(_record("request " + EVERY_CONTROL, path="/models/x" + EVERY_CONTROL))
    assert not any(unicodedata.category(c) in LINE_BREAKING for c in line)
    assert len(line.splitlines()) == 1
    assert (
        "\\r" in line
        and "\\n" in line
        and "\\x00" in line
        and "\\x1b" in line
        and "\\u2028" in line
    )


def test_a_forged_line_stays_inside_the_real_one() -> None:
    forged = "x\r\n2026-01-01 00:00:00,000 INFO modelserve.access request status=200"
    line = _format(_record("request", path="/models/" + forged, status=404))
    assert line.splitlines() == [line]
    assert line.endswith("status=404")


def test_a_traceback_is_one_line_too() -> None:
    try:
        raise ValueError("bad\nname")
    except ValueError:
        record = _record("failed")
        record.exc_info = sys.exc_info()
    line = _format(record)
    assert line.splitlines() == [line]
    assert "Traceback" in line and "ValueError: bad\\nname" in line


def test_printable_text_is_unchanged() -> None:
    text = "GET /models/breast-cancer café 半径 \\n"
    assert one_line(text) is text


def test_json_lines_quote_control_characters() -> None:
    line = JsonFormatter().format(_record("request", path="/x" + EVERY_CONTROL))
    assert "\n" not in line and "\r" not in line and "\x00" not in line
