"""Writes the vector files (values, streams, rpc, readings, objects) in this folder from the cases below.

Every expectation here is written by hand from spec/PROTOCOL.md, never computed by either
implementation: this file only spares us typing long strings and escaping JSON inside JSON.
Run `python spec/vectors/generate.py` after editing; both test suites read the JSON files.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
NAN = {"$float": "nan"}
INF = {"$float": "inf"}
NINF = {"$float": "-inf"}


def big(n: int) -> dict[str, str]:
    return {"$bigint": str(n)}


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def nested_value(depth: int) -> dict[str, int]:
    """A tag for ``depth`` arrays nested in each other (too deep to write out in the file)."""
    return {"$nested": depth}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def values() -> list[dict[str, Any]]:
    c: list[dict[str, Any]] = []

    def both(name: str, value: Any, text: str, **extra: Any) -> None:
        c.append({"name": name, "value": value, "text": text, **extra})

    def enc_error(name: str, value: Any, path: str, **extra: Any) -> None:
        c.append({"name": name, "value": value, "encode_error": "ENCODE_ERROR", "path": path, **extra})

    def dec(name: str, text: str, decodes_to: Any, **extra: Any) -> None:
        c.append({"name": name, "text": text, "decodes_to": decodes_to, **extra})

    def dec_error(
        name: str, text: str | None, column: int, reason: str, raw: bytes | None = None, line: int = 1
    ) -> None:
        """A text both languages reject, and where (1-based line and column, in characters) and why."""
        case: dict[str, Any] = {"name": name, "decode_error": "DECODE_ERROR", "line": line, "column": column}
        case["reason"] = reason
        if raw is not None:
            case["base64"] = b64(raw)
        else:
            case["text"] = text
        c.append(case)

    # literals and integers
    both("null", None, "null")
    both("true", True, "true")
    both("false", False, "false")
    both("zero", 0, "0")
    both("negative int", -1, "-1")
    both("int 42", 42, "42")
    both("max safe integer", 9007199254740991, "9007199254740991")
    both("min safe integer", -9007199254740991, "-9007199254740991")
    enc_error("2**53+1 would change in JavaScript", big(2**53 + 1), "$")
    enc_error("-(2**53+1) would change in JavaScript", big(-(2**53 + 1)), "$")
    both("2**53 reads back unchanged in JavaScript", big(2**53), "9007199254740992", py_only=True)
    both(
        "10**20 reads back unchanged in JavaScript",
        big(10**20),
        "100000000000000000000",
        decodes_to=1e20,  # beyond 64 bits, orjson reads a float
        py_only=True,
    )
    both(
        "a double's shortest digits read back unchanged",
        big(32533379248343410),
        "32533379248343410",
        py_only=True,
    )
    both("float 1e20", 1e20, "100000000000000000000", text_py="1e+20")
    enc_error("unsafe integer nested", {"ids": [1, big(2**60)]}, "$.ids[1]")
    both("big int sent as is when asked", big(2**53 + 1), "9007199254740993", options={"big_ints": True})
    enc_error("2**60 would change in JavaScript", big(2**60), "$")
    both(
        "beyond 64 bits sent as is when asked (reads back as a float)",
        big(2**70),
        "1180591620717411303424",
        options={"big_ints": True},
        decodes_to=1.1805916207174113e21,
    )
    enc_error("BigInt nested in object", {"a": {"b c": big(10**30 + 1)}}, '$.a["b c"]')
    # floats
    both("float 1.5", 1.5, "1.5")
    both("float -273.15", -273.15, "-273.15")
    both("0.1 + 0.2", 0.30000000000000004, "0.30000000000000004")
    both("smallest subnormal", 5e-324, "5e-324")
    both("largest double", 1.7976931348623157e308, "1.7976931348623157e+308")
    both("1e300", 1e300, "1e+300")
    both("1e-7", 1e-7, "1e-7")
    both("2.5e-5", 2.5e-5, "0.000025")
    both("1e21", 1e21, "1e+21")
    both("integral float", 1.0, "1", text_py="1.0")
    both("integral float 1e16", 1e16, "10000000000000000", text_py="1e+16")
    both("negative zero (Python)", {"$float": "-0"}, "-0.0", py_only=True)
    both("negative zero (JavaScript)", {"$float": "-0"}, "0", decodes_to=0, js_only=True)
    both("NaN sends null", NAN, "null", decodes_to=None)
    both("Infinity sends null", INF, "null", decodes_to=None)
    both("-Infinity sends null", NINF, "null", decodes_to=None)
    both("NaN in a reading sends null", {"celsius": NAN}, '{"celsius":null}', decodes_to={"celsius": None})
    enc_error("strict NaN", NAN, "$", options={"strict": True})
    enc_error("strict Infinity", INF, "$", options={"strict": True})
    enc_error(
        "strict NaN deep in readings",
        {"readings": [{"celsius": 1.5}, {"celsius": 2}, {"celsius": 3}, {"celsius": NAN}]},
        "$.readings[3].celsius",
        options={"strict": True},
    )
    both("strict passes finite values", {"celsius": 12.25}, '{"celsius":12.25}', options={"strict": True})
    # strings and escapes
    both("empty string", "", '""')
    both("ascii string", "hello", '"hello"')
    both("quote and backslash", 'a"b\\c', '"a\\"b\\\\c"')
    both("slash is not escaped", "a/b", '"a/b"')
    both("short escapes", "\b\f\n\r\t", '"\\b\\f\\n\\r\\t"')
    both("control characters", "\u0000\u0001\u001f", '"\\u0000\\u0001\\u001f"')
    both("DEL is raw", "\u007f", '"\u007f"')
    both("two-byte UTF-8", "é ñ ü", '"é ñ ü"')
    both("three-byte UTF-8", "€ 中文", '"€ 中文"')
    both("four-byte UTF-8 (G clef)", "\U0001d11e", '"\U0001d11e"')
    both("emoji plane 1", "\U0001f600\U0001f321", '"\U0001f600\U0001f321"')
    both("plane 2 CJK extension B", "\U00020000", '"\U00020000"')
    both("plane 14 tag", "\U000e0001", '"\U000e0001"')
    both("plane 15 and 16 private use", "\U000f0000\U0010ffff", '"\U000f0000\U0010ffff"')
    both("noncharacters U+FFFE U+FFFF", "\ufffe\uffff", '"\ufffe\uffff"')
    both("U+2028 and U+2029 stay raw", "a\u2028b\u2029c", '"a\u2028b\u2029c"')
    both("U+FEFF inside a string", "\ufeffx", '"\ufeffx"')
    both("long ascii string", "x" * 100_000, '"' + "x" * 100_000 + '"')
    both("long non-ASCII string over 64 KiB", "é€" * 30_000, '"' + "é€" * 30_000 + '"')
    enc_error("lone high surrogate", "\ud800", "$")
    enc_error("lone low surrogate in array", ["ok", "\udc00"], "$[1]")
    enc_error("reversed surrogates", "\udc00\ud800", "$")
    enc_error("lone surrogate in a key", {"k\ud800": 1}, '$["k\\ud800"]')
    dec("escaped surrogate pair", '"\\ud834\\udd1e"', "\U0001d11e")
    dec("escaped letter", '"\\u0041\\u00e9"', "Aé")
    dec("escaped line separator", '"\\u2028"', "\u2028")
    dec_error("escaped lone high surrogate", '"\\ud800"', 2, "lone surrogate \\ud800 in string")
    dec_error("escaped lone low surrogate", '"\\udc00"', 2, "lone surrogate \\udc00 in string")
    dec_error("escaped reversed surrogates", '"\\udc00\\ud800"', 2, "lone surrogate \\udc00 in string")
    dec_error("escaped high surrogate then letter", '"\\ud800x"', 2, "lone surrogate \\ud800 in string")
    dec_error("escaped low then low surrogate", '"\\udc00\\udc01"', 2, "lone surrogate \\udc00 in string")
    dec_error("escaped high then private use", '"\\ud800\\ue000"', 2, "lone surrogate \\ud800 in string")
    dec_error("escaped last low surrogate", '"\\udfff"', 2, "lone surrogate \\udfff in string")
    dec_error("escaped last pair, then an error", '["\\udbff\\udfff" x]', 17, "expected ',' or ']'")
    dec_error("escaped private use, then an error", '["\\ue000" x]', 11, "expected ',' or ']'")
    # containers
    both("empty array", [], "[]")
    both("empty object", {}, "{}")
    both("nested empties", [[], {}, [[]]], "[[],{},[[]]]")
    both("empty key", {"": {}}, '{"":{}}')
    both("key order kept", {"b": 1, "a": 2, "c": 3}, '{"b":1,"a":2,"c":3}')
    both(
        "a reading",
        {"sensor": "s1", "seq": 7, "t": 1732470000.5, "celsius": -3.25},
        '{"sensor":"s1","seq":7,"t":1732470000.5,"celsius":-3.25}',
    )
    both("mixed array", [1, "a", None, True, 2.5, {"x": []}], '[1,"a",null,true,2.5,{"x":[]}]')
    both("1000 numbers", list(range(1000)), "[" + ",".join(map(str, range(1000))) + "]")
    both("500 nested arrays", nested_value(500), nested(500))
    both("1024 nested arrays (the limit)", nested_value(1024), nested(1024))
    dec_error("1025 nested arrays", nested(1025), 1025, "nesting deeper than 1024 arrays/objects")
    enc_error("1025 nested arrays cannot be sent", nested_value(1025), "$" + "[0]" * 1024)
    # decoding: accepted forms
    dec("duplicate key: last wins", '{"a":1,"a":2}', {"a": 2})
    dec("whitespace around", " \t\n\r1 \n", 1)
    dec("exponent form", "1E2", 100.0)
    dec("underflow reads as zero", "1e-400", 0.0)
    dec("big int 2**53+1 (Python keeps it)", "9007199254740993", big(2**53 + 1), py_only=True)
    dec("big int 2**53+1 (JavaScript rounds)", "9007199254740993", 9007199254740992, js_only=True)
    dec("all short escapes", '"\\"\\\\\\/\\b\\f\\n\\r\\t"', '"\\/\b\f\n\r\t')
    c.append({"name": "leading BOM skipped", "base64": b64(b"\xef\xbb\xbf{}"), "decodes_to": {}})
    # decoding: rejected forms, with the column (1-based, in characters) and the reason
    value_expected = "unexpected character {}"
    after = "unexpected content after the value"
    end = "unexpected end of data"
    for name, text, column, reason in [
        ("NaN token", "NaN", 1, value_expected.format("'N'")),
        ("Infinity token", "Infinity", 1, value_expected.format("'I'")),
        ("-Infinity token", "-Infinity", 2, "invalid number"),
        ("trailing comma in array", "[1,]", 3, "trailing comma before ']'"),
        ("trailing comma in object", '{"a":1,}', 7, "trailing comma before '}'"),
        ("single quotes", "{'a':1}", 2, "expected a string key"),
        ("leading zero", "01", 2, after),
        ("leading zero in an array", "[01]", 3, "expected ',' or ']'"),
        ("leading plus", "+1", 1, value_expected.format("'+'")),
        ("comment", "// c\n1", 1, value_expected.format("'/'")),
        ("trailing garbage", "[1] x", 5, after),
        ("two values", "1 2", 3, after),
        ("empty text", "", 1, end),
        ("only spaces", "   ", 4, end),
        ("bad escape", '"\\x41"', 2, "invalid escape in string"),
        ("bad escape letter", '["\\X"]', 3, "invalid escape in string"),
        ("unescaped newline in string", '"a\nb"', 3, "unescaped control character U+000A in string"),
        ("unescaped tab in string", '"a\tb"', 3, "unescaped control character U+0009 in string"),
        ("unquoted key", "{a:1}", 2, "expected a string key"),
        ("missing colon", '{"a" 1}', 6, "expected ':' after the key"),
        ("missing comma", "[1 2]", 4, "expected ',' or ']'"),
        ("missing comma in object", '{"a":1 "b":2}', 8, "expected ',' or '}'"),
        ("misspelt literal", "[tru]", 2, value_expected.format("'t'")),
        ("unfinished literal", "[tr", 4, end),
        ("unterminated string", '["ab', 5, "unterminated string"),
        ("control character in string", '"a\x01"', 3, "unescaped control character U+0001 in string"),
        ("number without digits after the point", "1.", 3, end),
        ("number without exponent digits", "[1.5e+]", 7, "invalid number"),
        ("number without digits after E", "[1E]", 4, "invalid number"),
        ("overflow 1e400", "1e400", 1, "number too large (it overflows to infinity)"),
        ("overflow -1e400 in array", "[-1e400]", 2, "number too large (it overflows to infinity)"),
        ("overflow: 400 digits", "1" * 400, 1, "number too large (it overflows to infinity)"),
        ("hex number", "0x10", 2, after),
        ("lone minus", "-", 2, end),
        ("unclosed array", "[1,2", 5, end),
        ("unclosed array after a comma", "[1,", 4, end),
        ("a capital X", "[X]", 2, value_expected.format("'X'")),
        ("object ends after a key", '{"a"', 5, end),
        ("unclosed object", '{"a":', 6, end),
        ("True capitalised", "True", 1, value_expected.format("'T'")),
        ("non-ASCII before the error", '["é€😀" x]', 8, "expected ',' or ']'"),
        ("control character outside a string", "[\x01]", 2, value_expected.format("U+0001")),
        ("the first printable character", "[!]", 2, value_expected.format("'!'")),
        ("the last printable ASCII character", "[~]", 2, value_expected.format("'~'")),
        ("DEL outside a string", "[\x7f]", 2, value_expected.format("U+007F")),
        ("unfinished text 191 deep", "[" * 191, 192, end),
    ]:
        dec_error(name, text, column, reason)
    dec_error(
        "error on the third line", '{"a": 1,\n "b": 2,\n "c" 3}', 6, "expected ':' after the key", line=3
    )
    for name, raw, column, reason in [
        ("invalid UTF-8 byte", b'"\xff"', 2, "invalid UTF-8 (byte 0xff)"),
        ("overlong UTF-8", b'"\xc0\xaf"', 2, "invalid UTF-8 (byte 0xc0)"),
        ("UTF-8 encoded surrogate", b'"\xed\xa0\x80"', 2, "invalid UTF-8 (byte 0xed)"),
        ("truncated UTF-8", b'"\xe2\x82"', 2, "invalid UTF-8 (byte 0xe2)"),
        ("latin-1 text", b'"caf\xe9"', 5, "invalid UTF-8 (byte 0xe9)"),
        ("BOM only", b"\xef\xbb\xbf", 1, end),
        ("two BOMs", b"\xef\xbb\xbf\xef\xbb\xbf1", 1, value_expected.format("U+FEFF")),
    ]:
        dec_error(name, None, column, reason, raw=raw)
    dec_error(
        "invalid UTF-8 on the third line", None, 5, "invalid UTF-8 (byte 0xff)", b'[1,\n 2,\n "ab\xff"]', 3
    )
    return c


def msg(value: Any, line: int) -> dict[str, Any]:
    return {"message": value, "line": line}


def err(line: int, column: int, reason: str) -> dict[str, Any]:
    """A malformed line: where (1-based line and column, in characters) and why."""
    return {"error": "DECODE_ERROR", "line": line, "column": column, "reason": reason}


def too_long(line: int, limit: int = 10) -> dict[str, Any]:
    reason = f"line is longer than the limit of {limit} bytes (skipped up to the next newline)"
    return {"error": "FRAME_TOO_LARGE", "line": line, "column": 0, "reason": reason}


def trunc(line: int, delivered: bool, why: str = "") -> dict[str, Any]:
    """The stream ended without a final newline; ``why`` the line did not parse (when it did not)."""
    if delivered:
        reason = "stream ended without a final newline (the line parsed and was delivered)"
    else:
        reason = f"stream ended in the middle of a line ({why})"
    return {"error": "TRUNCATED_LINE", "line": line, "delivered": delivered, "reason": reason}


def streams() -> list[dict[str, Any]]:
    c: list[dict[str, Any]] = []

    def case(name: str, data: str | bytes, events: list[dict[str, Any]], **extra: Any) -> None:
        entry: dict[str, Any] = {"name": name}
        if isinstance(data, bytes):
            entry["base64"] = b64(data)
        else:
            entry["input"] = data
        entry.update(extra)
        entry["events"] = events
        c.append(entry)

    case("empty stream", "", [])
    case("one message", "1\n", [msg(1, 1)])
    case("three messages", "1\n2\n3\n", [msg(1, 1), msg(2, 2), msg(3, 3)])
    case("CRLF endings", "1\r\n2\r\n", [msg(1, 1), msg(2, 2)])
    case("mixed CRLF and LF", '{"a":1}\r\n[2]\n"x"\r\n', [msg({"a": 1}, 1), msg([2], 2), msg("x", 3)])
    case("blank lines skipped, still counted", "\n\n1\n\n2\n", [msg(1, 3), msg(2, 5)])
    case("whitespace-only line skipped", "1\n \t \r\n2\n", [msg(1, 1), msg(2, 3)])
    case(
        "only space, tab and CR make a blank line",
        "1\nX\n\x0c\n\x0b\n2\n",
        [
            msg(1, 1),
            err(2, 1, "unexpected character 'X'"),
            err(3, 1, "unexpected character U+000C"),
            err(4, 1, "unexpected character U+000B"),
            msg(2, 5),
        ],
    )
    case("only newlines", "\n\n\n", [])
    case("only CRLFs", "\r\n\r\n", [])
    case("BOM at start skipped", "\ufeff1\n2\n", [msg(1, 1), msg(2, 2)])
    case("BOM only", "\ufeff", [])
    case("BOM then blank then value", "\ufeff\n7\n", [msg(7, 2)])
    case(
        "BOM in the middle is an error",
        "1\n\ufeff2\n3\n",
        [msg(1, 1), err(2, 1, "unexpected character U+FEFF"), msg(3, 3)],
    )
    case(
        "malformed line between good ones",
        "1\n{bad\n3\n",
        [msg(1, 1), err(2, 2, "expected a string key"), msg(3, 3)],
    )
    case("NaN token line", "1\nNaN\n2\n", [msg(1, 1), err(2, 1, "unexpected character 'N'"), msg(2, 3)])
    case("trailing comma line", "[1,]\n[1]\n", [err(1, 3, "trailing comma before ']'"), msg([1], 2)])
    case("two values on one line", "1 2\n3\n", [err(1, 3, "unexpected content after the value"), msg(3, 2)])
    case(
        "every line bad",
        "a\nb\nc\n",
        [err(i, 1, f"unexpected character '{c}'") for i, c in enumerate("abc", 1)],
    )
    case(
        "lone surrogate escape line",
        '"ok"\n"\\ud800"\n"ok"\n',
        [msg("ok", 1), err(2, 2, "lone surrogate \\ud800 in string"), msg("ok", 3)],
    )
    case(
        "overflowing number line",
        "1\n1e400\n2\n",
        [msg(1, 1), err(2, 1, "number too large (it overflows to infinity)"), msg(2, 3)],
    )
    case(
        "1025 nested arrays line",
        "1\n" + nested(1025) + "\n2\n",
        [msg(1, 1), err(2, 1025, "nesting deeper than 1024 arrays/objects"), msg(2, 3)],
    )
    case("1024 nested arrays line", nested(1024) + "\n", [msg(nested_value(1024), 1)])
    case("missing final newline", "1\n2", [msg(1, 1), msg(2, 2), trunc(2, True)])
    case("missing final newline after CRLF", "1\r\n2\r", [msg(1, 1), msg(2, 2), trunc(2, True)])
    case("incomplete final line", '1\n{"a":', [msg(1, 1), trunc(2, False, "unexpected end of data")])
    case("final line X", "1\nX", [msg(1, 1), trunc(2, False, "unexpected character 'X'")])
    case("final line form feed", "1\n\x0c", [msg(1, 1), trunc(2, False, "unexpected character U+000C")])
    case("blank unterminated final line", "1\n  ", [msg(1, 1)])
    case("tutorial sensor: bare numbers", "3.8\n-1.5\n12\n", [msg(3.8, 1), msg(-1.5, 2), msg(12, 3)])
    case(
        "tutorial bug: readings run together",
        "3.8-1.5\n4.25\n",
        [err(1, 4, "unexpected content after the value"), msg(4.25, 2)],
    )
    case(
        "null, strings, containers",
        'null\n"a b"\n[]\n{}\n',
        [msg(None, 1), msg("a b", 2), msg([], 3), msg({}, 4)],
    )
    case("spaces around values", " 1 \n\t[2] \n", [msg(1, 1), msg([2], 2)])
    case("multi-byte UTF-8 values", '"é€\U0001d11e"\n"中"\n', [msg("é€\U0001d11e", 1), msg("中", 2)])
    case("U+2028 is not a line break", '"a\u2028b"\n', [msg("a\u2028b", 1)])
    case("100 messages in order", "".join(f"{i}\n" for i in range(100)), [msg(i, i + 1) for i in range(100)])
    case(
        "readings",
        '{"sensor":"a","seq":1,"t":1.5,"celsius":3.25}\n{"sensor":"b","seq":1,"t":2.5,"celsius":-4.0}\n',
        [
            msg({"sensor": "a", "seq": 1, "t": 1.5, "celsius": 3.25}, 1),
            msg({"sensor": "b", "seq": 1, "t": 2.5, "celsius": -4.0}, 2),
        ],
    )
    case("line over 64 KiB", '"' + "é" * 40_000 + '"\n1\n', [msg("é" * 40_000, 1), msg(1, 2)])
    case(
        "invalid UTF-8 line between good ones",
        b'1\n"\xff"\n3\n',
        [msg(1, 1), err(2, 2, "invalid UTF-8 (byte 0xff)"), msg(3, 3)],
    )
    case(
        "UTF-8 encoded surrogate line",
        b'"\xed\xa0\x80"\n2\n',
        [err(1, 2, "invalid UTF-8 (byte 0xed)"), msg(2, 2)],
    )
    case(
        "invalid UTF-8 in unterminated final line",
        b'1\n"\xfe',
        [msg(1, 1), trunc(2, False, "invalid UTF-8 (byte 0xfe)")],
    )
    # the line limit (max_line = 10 bytes before the newline)
    case(
        "over-long line between good ones",
        '1\n"' + "x" * 20 + '"\n3\n',
        [msg(1, 1), too_long(2), msg(3, 3)],
        max_line=10,
    )
    case("line of exactly the limit", '"12345678"\n', [msg("12345678", 1)], max_line=10)
    case("line one byte over the limit", '"123456789"\n2\n', [too_long(1), msg(2, 2)], max_line=10)
    case("CR counts toward the limit (fits)", '"1234567"\r\n', [msg("1234567", 1)], max_line=10)
    case("CR counts toward the limit (over)", '"12345678"\r\n5\n', [too_long(1), msg(5, 2)], max_line=10)
    case("over-long blank line", " " * 30 + "\n1\n", [too_long(1), msg(1, 2)], max_line=10)
    case("over-long unterminated final line", "1\n" + "x" * 30, [msg(1, 1), too_long(2)], max_line=10)
    case(
        "two over-long lines in a row",
        "y" * 15 + "\n" + "z" * 15 + "\n4\n",
        [too_long(1), too_long(2), msg(4, 3)],
        max_line=10,
    )
    case(
        "over-long line then truncated value",
        "x" * 20 + "\n5",
        [too_long(1), msg(5, 2), trunc(2, True)],
        max_line=10,
    )
    case(
        "over-long line of multi-byte text", '"' + "é" * 10 + '"\n1\n', [too_long(1), msg(1, 2)], max_line=10
    )
    # binary frames (section 2, "Binary frames"): a "#blob N" line, then N raw bytes, for a
    # decoder that takes them (binary=True); any other decoder sees an ordinary bad line
    case(
        "no binary frames unless asked for",
        b"#blob 3\nabc\n1\n",
        [err(1, 1, "unexpected character '#'"), err(2, 1, "unexpected character 'a'"), msg(1, 3)],
    )
    case("binary frame then a message", b"#blob 3\nabc1\n", [binary(b"abc", 1), msg(1, 2)], binary=True)
    case(
        "binary frame of newlines", b"#blob 4\n\n\n\n\n2\n", [binary(b"\n\n\n\n", 1), msg(2, 2)], binary=True
    )
    case("empty binary frame", b"#blob 0\n5\n", [binary(b"", 1), msg(5, 2)], binary=True)
    case(
        "binary frame between messages",
        b"1\n#blob 2\n\x00\xff2\n",
        [msg(1, 1), binary(b"\x00\xff", 2), msg(2, 3)],
        binary=True,
    )
    case(
        "two binary frames in a row",
        b"#blob 1\nx#blob 1\ny\n",
        [binary(b"x", 1), binary(b"y", 2)],
        binary=True,
    )
    case("binary frame header with CRLF", b"#blob 2\r\n{}3\n", [binary(b"{}", 1), msg(3, 2)], binary=True)
    case("binary frame at the very end", b"#blob 2\nhi", [binary(b"hi", 1)], binary=True)
    case("binary frame after a BOM", b"\xef\xbb\xbf#blob 1\n\xef\n", [binary(b"\xef", 1)], binary=True)
    case(
        "binary frame header that is not a count",
        b"#blob x\n1\n",
        [err(1, 1, "invalid binary frame header"), msg(1, 2)],
        binary=True,
    )
    case(
        "binary frame count with a leading zero",
        b"#blob 01\n1\n",
        [err(1, 1, "invalid binary frame header"), msg(1, 2)],
        binary=True,
    )
    case(
        "a # line that is no header",
        b"#blobby\n1\n",
        [err(1, 1, "unexpected character '#'"), msg(1, 2)],
        binary=True,
    )
    case(
        "binary frame over the limit is skipped",
        b"#blob 11\n" + b"\n" * 11 + b"1\n",
        [frame_too_large(1, 11), msg(1, 2)],
        max_line=10,
        binary=True,
    )
    case(
        "binary frame of exactly the limit",
        b"#blob 10\n" + b"z" * 10,
        [binary(b"z" * 10, 1)],
        max_line=10,
        binary=True,
    )
    case(
        # an over-long line is that, header or not, however the chunks fall: no frame follows
        "binary frame header over the limit",
        b"#blob 1\n1\n",
        [too_long(1, 4), msg(1, 2)],
        max_line=4,
        binary=True,
    )
    case(
        "stream ends inside a binary frame",
        b"7\n#blob 5\nab",
        [msg(7, 1), trunc_binary(2, 2, 5)],
        binary=True,
    )
    return c


def binary(data: bytes, line: int) -> dict[str, Any]:
    return {"binary": data.hex(), "line": line}


def frame_too_large(line: int, size: int, limit: int = 10) -> dict[str, Any]:
    reason = f"binary frame of {size} bytes is over the limit of {limit} bytes (skipped)"
    return {"error": "FRAME_TOO_LARGE", "line": line, "column": 0, "reason": reason}


def trunc_binary(line: int, got: int, size: int) -> dict[str, Any]:
    reason = f"stream ended inside a binary frame ({got} of {size} bytes)"
    return {"error": "TRUNCATED_LINE", "line": line, "delivered": False, "reason": reason}


def readings() -> list[dict[str, Any]]:
    """to_reading (bothways.telemetry.readings, js/src/telemetry.js): a message from ``source``
    received at ``now`` with ``seqs`` given so far becomes ``reading`` (and ``seqs_after``), or is
    ``invalid`` with that reason."""
    c: list[dict[str, Any]] = []
    now = 1733400000.25
    micro = 1733400000250000  # int(now * 1e6)

    def ok(
        name: str, value: Any, reading: dict[str, Any], seqs: dict[str, int] | None = None, **extra: Any
    ) -> None:
        case = {
            "name": name,
            "value": value,
            "source": "tcp://127.0.0.1:9000",
            "now": now,
            "seqs": seqs or {},
        }
        c.append({**case, **extra, "reading": reading})

    def bad(name: str, value: Any, reason: str) -> None:
        c.append({"name": name, "value": value, "source": "stdin", "now": now, "seqs": {}, "invalid": reason})

    src = "tcp://127.0.0.1:9000"
    r = {"sensor": "s1", "seq": 7, "t": 1733399999.5, "celsius": 21.5}
    ok("a whole reading", dict(r), dict(r))
    ok("t defaults to the time received", {"sensor": "s1", "seq": 7, "celsius": 21.5}, {**r, "t": now})
    ok(
        "extra fields kept after the four",
        {"unit": "C", **r, "room": "lab"},
        {**r, "unit": "C", "room": "lab"},
    )
    ok(
        "integers become numbers",
        {"sensor": "s1", "seq": 0, "t": 5, "celsius": -3},
        {"sensor": "s1", "seq": 0, "t": 5.0, "celsius": -3.0},
    )
    ok("seq at the limit", {**r, "seq": 2**53 - 1}, {**r, "seq": 2**53 - 1})
    ok("integral float seq", {**r, "seq": 7.0}, r)
    ok("bare number", 3.8, {"sensor": src, "seq": micro, "t": now, "celsius": 3.8}, seqs_after={src: micro})
    ok("bare integer", 12, {"sensor": src, "seq": micro, "t": now, "celsius": 12.0}, seqs_after={src: micro})
    ok(
        "bare number after a larger seq",
        -1.5,
        {"sensor": src, "seq": micro + 5, "t": now, "celsius": -1.5},
        seqs={src: micro + 4},
        seqs_after={src: micro + 5},
    )
    bad("a string", "3.8", "a reading is an object or a number, not a string")
    bad("an array", [3.8], "a reading is an object or a number, not an array")
    bad("a boolean", True, "a reading is an object or a number, not a boolean")
    bad("null", None, "a reading is an object or a number, not null")
    bad("no sensor", {"seq": 1, "celsius": 2}, 'missing "sensor"')
    bad("empty sensor", {"sensor": "", "seq": 1, "celsius": 2}, '"sensor" must be a non-empty string')
    bad("numeric sensor", {"sensor": 5, "seq": 1, "celsius": 2}, '"sensor" must be a non-empty string')
    bad("no seq", {"sensor": "s", "celsius": 2}, 'missing "seq"')
    seq_reason = '"seq" must be an integer from 0 to 9007199254740991'
    bad("negative seq", {"sensor": "s", "seq": -1, "celsius": 2}, seq_reason)
    bad("fractional seq", {"sensor": "s", "seq": 1.5, "celsius": 2}, seq_reason)
    bad("seq too large", {"sensor": "s", "seq": 2**53, "celsius": 2}, seq_reason)
    bad("string seq", {"sensor": "s", "seq": "1", "celsius": 2}, seq_reason)
    bad("boolean seq", {"sensor": "s", "seq": True, "celsius": 2}, seq_reason)
    bad(
        "string t",
        {"sensor": "s", "seq": 1, "t": "now", "celsius": 2},
        '"t" must be a number (seconds since the epoch)',
    )
    bad(
        "null t",
        {"sensor": "s", "seq": 1, "t": None, "celsius": 2},
        '"t" must be a number (seconds since the epoch)',
    )
    bad("no celsius", {"sensor": "s", "seq": 1}, 'missing "celsius"')
    bad(
        "null celsius (NaN sent as null)",
        {"sensor": "s", "seq": 1, "celsius": None},
        '"celsius" must be a finite number',
    )
    bad("string celsius", {"sensor": "s", "seq": 1, "celsius": "21"}, '"celsius" must be a finite number')
    return c


def rpc() -> list[dict[str, Any]]:
    """Steps driving an RpcEndpoint. The first cases follow the examples of the JSON-RPC 2.0
    specification (jsonrpc.org/specification, section 7); answers that need a method table
    (\"Method not found\") are given by a respond_error step, as the Peer adapter does."""
    c: list[dict[str, Any]] = []

    def case(name: str, *steps: dict[str, Any]) -> None:
        c.append({"name": name, "steps": list(steps)})

    def req(method: str, params: Any, id_: Any) -> dict[str, Any]:
        m: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            m["params"] = params
        m["id"] = id_
        return m

    def note(method: str, params: Any = None) -> dict[str, Any]:
        m: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            m["params"] = params
        return m

    def ok(id_: Any, result: Any) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "result": result, "id": id_}

    def fail(id_: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
        error: dict[str, Any] = {"code": code, "message": message}
        if data is not None:
            error["data"] = data
        return {"jsonrpc": "2.0", "error": error, "id": id_}

    def invalid(reason: str, id_: Any = None) -> dict[str, Any]:
        return fail(id_, -32600, "Invalid Request", {"reason": reason})

    # --- the specification's examples, as the callee
    case(
        "spec: positional parameters",
        {
            "receive": req("subtract", [42, 23], 1),
            "events": [{"request": {"id": 1, "method": "subtract", "params": [42, 23]}}],
        },
        {"respond": [1, 19]},
        {"send": [ok(1, 19)]},
    )
    case(
        "spec: named parameters",
        {
            "receive": req("subtract", {"subtrahend": 23, "minuend": 42}, 3),
            "events": [
                {"request": {"id": 3, "method": "subtract", "params": {"subtrahend": 23, "minuend": 42}}}
            ],
        },
        {"respond": [3, 19]},
        {"send": [ok(3, 19)]},
    )
    case(
        "spec: a notification gets no answer",
        {
            "receive": note("update", [1, 2, 3, 4, 5]),
            "events": [{"notification": {"method": "update", "params": [1, 2, 3, 4, 5]}}],
        },
        {"receive": note("foobar"), "events": [{"notification": {"method": "foobar", "params": None}}]},
        {"send": []},
    )
    case(
        "spec: a method that does not exist",
        {
            "receive": req("foobar", None, "1"),
            "events": [{"request": {"id": "1", "method": "foobar", "params": None}}],
        },
        {"respond_error": ["1", -32601, "Method not found"]},
        {"send": [fail("1", -32601, "Method not found")]},
    )
    case("spec: invalid JSON", {"parse_error": True}, {"send": [fail(None, -32700, "Parse error")]})
    case(
        "spec: invalid Request object",
        {"receive": {"jsonrpc": "2.0", "method": 1, "params": "bar"}, "events": []},
        {"send": [invalid("method must be a string")]},
    )
    case("spec: empty batch", {"receive": [], "events": []}, {"send": [invalid("empty batch")]})
    case(
        "spec: batch of one invalid item",
        {"receive": [1], "events": []},
        {"send": [[invalid("expected an object, got number")]]},
    )
    case(
        "spec: batch of three invalid items",
        {"receive": [1, 2, 3], "events": []},
        {"send": [[invalid("expected an object, got number")] * 3]},
    )
    case(
        "spec: mixed batch answered as one array",
        {
            "receive": [
                req("sum", [1, 2, 4], "1"),
                note("notify_hello", [7]),
                req("subtract", [42, 23], "2"),
                {"foo": "boo"},
                req("foo.get", {"name": "myself"}, "5"),
                req("get_data", None, "9"),
            ],
            "events": [
                {"request": {"id": "1", "method": "sum", "params": [1, 2, 4]}},
                {"notification": {"method": "notify_hello", "params": [7]}},
                {"request": {"id": "2", "method": "subtract", "params": [42, 23]}},
                {"request": {"id": "5", "method": "foo.get", "params": {"name": "myself"}}},
                {"request": {"id": "9", "method": "get_data", "params": None}},
            ],
        },
        {"respond": ["1", 7]},
        {"respond": ["2", 19]},
        {"respond_error": ["5", -32601, "Method not found"]},
        {"send": []},
        {"respond": ["9", ["hello", 5]]},
        {
            "send": [
                [
                    invalid('"jsonrpc" must be exactly "2.0"'),
                    ok("1", 7),
                    ok("2", 19),
                    fail("5", -32601, "Method not found"),
                    ok("9", ["hello", 5]),
                ]
            ]
        },
    )
    case(
        "spec: batch of notifications gets no answer",
        {
            "receive": [note("notify_sum", [1, 2, 4]), note("notify_hello", [7])],
            "events": [
                {"notification": {"method": "notify_sum", "params": [1, 2, 4]}},
                {"notification": {"method": "notify_hello", "params": [7]}},
            ],
        },
        {"send": []},
    )
    # --- as the caller
    case(
        "calls get increasing ids and match their answers",
        {"request": ["add", [1, 2]], "id": 1},
        {"request": ["add", [3, 4]], "id": 2},
        {"notify": ["log", {"text": "hi"}]},
        {"send": [req("add", [1, 2], 1), req("add", [3, 4], 2), note("log", {"text": "hi"})]},
        {"receive": ok(2, 7), "events": [{"response": {"id": 2, "result": 7}}]},
        {"receive": ok(1, 3), "events": [{"response": {"id": 1, "result": 3}}]},
        {"receive": ok(1, 3), "events": []},
        {"pending": []},
    )
    case(
        "a call without params sends none",
        {"request": ["ping", None], "id": 1},
        {"send": [{"jsonrpc": "2.0", "method": "ping", "id": 1}]},
        {"receive": ok(1, None), "events": [{"response": {"id": 1, "result": None}}]},
    )
    case(
        "an error answer carries the remote type and traceback",
        {"request": ["divide", [1, 0]], "id": 1},
        {
            "receive": fail(
                1, -32000, "division by zero", {"type": "ZeroDivisionError", "traceback": "Traceback ..."}
            ),
            "events": [
                {
                    "error_response": {
                        "id": 1,
                        "rpc_code": -32000,
                        "message": "division by zero",
                        "remote_type": "ZeroDivisionError",
                        "remote_traceback": "Traceback ...",
                    }
                }
            ],
        },
    )
    case(
        "cancel forgets the call and tells the peer",
        {"request": ["slow", None], "id": 1},
        {"cancel": 1, "returns": True},
        {"cancel": 1, "returns": False},
        {"send": [req("slow", None, 1) | {}, note("$/cancelRequest", {"id": 1})]},
        {"receive": ok(1, "late"), "events": []},
        {"pending": []},
    )
    case(
        "forget drops a call that never left, and tells the peer nothing",
        {"request": ["add", [1, 2]], "id": 1},
        {"request": ["add", [3, 4]], "id": 2},
        {"forget": 1, "returns": True},
        {"forget": 1, "returns": False},
        {"cancel": 1, "returns": False},
        {"send": [req("add", [3, 4], 2)]},
        {"pending": [2]},
        {"receive": ok(1, 3), "events": []},
        {"forget": 2, "returns": True},
        {"receive": ok(2, 7), "events": []},
        {"send": []},
        {"pending": []},
    )
    case(
        "the peer cancels a request it sent",
        {"receive": req("slow", [], 7), "events": [{"request": {"id": 7, "method": "slow", "params": []}}]},
        {"receive": note("$/cancelRequest", {"id": 7}), "events": [{"cancelled": 7}]},
        {"respond_error": [7, -32800, "Request cancelled"]},
        {"send": [fail(7, -32800, "Request cancelled")]},
    )
    case(
        "both sides call at once on one connection",
        {"request": ["ask", None], "id": 1},
        {"receive": req("ask", None, 1), "events": [{"request": {"id": 1, "method": "ask", "params": None}}]},
        {"respond": [1, "their answer"]},
        {"receive": ok(1, "our answer"), "events": [{"response": {"id": 1, "result": "our answer"}}]},
        {"send": [req("ask", None, 1), ok(1, "their answer")]},
    )
    case(
        "an error answer with a null id",
        {
            "receive": fail(None, -32700, "Parse error"),
            "events": [
                {
                    "error_response": {
                        "id": None,
                        "rpc_code": -32700,
                        "message": "Parse error",
                        "remote_type": "",
                        "remote_traceback": "",
                    }
                }
            ],
        },
    )
    case(
        "a duplicate id in a batch is refused",
        {
            "receive": [req("a", None, 1), req("b", None, 1)],
            "events": [{"request": {"id": 1, "method": "a", "params": None}}],
        },
        {"respond": [1, "A"]},
        {"send": [[invalid("duplicate id in batch", 1), ok(1, "A")]]},
    )
    case(
        "a duplicate id in a batch leaves the other requests in order",
        {
            "receive": [req("f", None, 1), req("f", None, 0), req("f", None, 1)],
            "events": [
                {"request": {"id": 1, "method": "f", "params": None}},
                {"request": {"id": 0, "method": "f", "params": None}},
            ],
        },
        {"respond": [1, "A"]},
        {"respond": [0, "B"]},
        {"send": [[invalid("duplicate id in batch", 1), ok(1, "A"), ok(0, "B")]]},
    )

    # answers go by id: a request reusing the id of one still unanswered is refused at once
    def reused(id_: Any) -> dict[str, Any]:
        shown = json.dumps(id_, ensure_ascii=False)
        return invalid(f"duplicate id {shown}: a request with this id is still unanswered", id_)

    case(
        "an id still unanswered is refused, free again once answered",
        {"receive": req("a", [], 1), "events": [{"request": {"id": 1, "method": "a", "params": []}}]},
        {"receive": req("b", [], 1), "events": []},
        {"send": [reused(1)]},
        {"respond": [1, "A"]},
        {"receive": req("c", [], 1), "events": [{"request": {"id": 1, "method": "c", "params": []}}]},
        {"respond": [1, "C"]},
        {"send": [ok(1, "A"), ok(1, "C")]},
    )
    case(
        "an id still unanswered is refused in a later batch",
        {"receive": req("a", None, "x"), "events": [{"request": {"id": "x", "method": "a", "params": None}}]},
        {
            "receive": [req("b", None, "x"), req("c", None, 2)],
            "events": [{"request": {"id": 2, "method": "c", "params": None}}],
        },
        {"send": []},
        {"respond": ["x", "A"]},
        {"respond": [2, "C"]},
        {"send": [ok("x", "A"), [reused("x"), ok(2, "C")]]},
    )
    case(
        "an id of a batch still unanswered is refused in the next batch",
        {
            "receive": [req("a", None, 1), req("b", None, 2)],
            "events": [
                {"request": {"id": 1, "method": "a", "params": None}},
                {"request": {"id": 2, "method": "b", "params": None}},
            ],
        },
        {
            "receive": [req("c", None, 1), req("d", None, 3)],
            "events": [{"request": {"id": 3, "method": "d", "params": None}}],
        },
        {"respond": [3, "D"]},
        {"respond": [1, "A"]},
        {"respond": [2, "B"]},
        {"send": [[reused(1), ok(3, "D")], [ok(1, "A"), ok(2, "B")]]},
    )
    for name, message, reason, id_ in [
        ("wrong version", {"jsonrpc": "1.0", "method": "m", "id": 1}, '"jsonrpc" must be exactly "2.0"', 1),
        ("no version", {"method": "m", "id": 2}, '"jsonrpc" must be exactly "2.0"', 2),
        (
            "params not structured",
            {"jsonrpc": "2.0", "method": "m", "params": 5, "id": 3},
            "params must be an array or an object",
            3,
        ),
        (
            "null id on a request",
            {"jsonrpc": "2.0", "method": "m", "id": None},
            "a request's id must not be null",
            None,
        ),
        (
            "object id",
            {"jsonrpc": "2.0", "method": "m", "id": {"a": 1}},
            "id must be a string, an integer or null",
            None,
        ),
        (
            "boolean id",
            {"jsonrpc": "2.0", "method": "m", "id": True},
            "id must be a string, an integer or null",
            None,
        ),
        ("neither request nor response", {"jsonrpc": "2.0", "id": 4}, "neither a request nor a response", 4),
        ("a string, not an object", "hello", "expected an object, got string", None),
    ]:
        case(f"invalid: {name}", {"receive": message, "events": []}, {"send": [invalid(reason, id_)]})
    return c


def objects() -> list[dict[str, Any]]:
    """Trees of spec/PROTOCOL.md section 10 and what they stand for. A value here is JSON with
    two tags: {"$bytes": "hex"} is bytes, {"$array": {"dtype", "shape", "items"}} a typed array
    (items flat, in C order). "both": the tree is also what the value is sent as."""
    c: list[dict[str, Any]] = []

    def case(name: str, tree: Any, value: Any = None, *, error: str | None = None, both: bool = True) -> None:
        entry: dict[str, Any] = {"name": name, "tree": tree}
        if error is None:
            entry["value"] = value
            entry["both"] = both
        else:
            entry["error"] = error
        c.append(entry)

    def packed(marker: Any, **members: Any) -> dict[str, Any]:
        return {"$bothways": marker, **members}

    def array(dtype: str, shape: list[int], items: list[Any], data: bytes) -> None:
        case(
            f"array {dtype} {shape}",
            [packed("array", dtype=dtype, shape=shape, base64=b64(data))],
            [{"$array": {"dtype": dtype, "shape": shape, "items": items}}],
        )

    case("plain values stay", [1, "a", None, {"k": [True]}], [1, "a", None, {"k": [True]}])
    case("bytes", [packed("bytes", base64="AAEC/w==")], [{"$bytes": "000102ff"}])
    case("empty bytes", {"b": packed("bytes", base64="")}, {"b": {"$bytes": ""}})
    array("float64", [3], [1.5, -2, 0], bytes.fromhex("000000000000f83f00000000000000c00000000000000000"))
    array(
        "float64",
        [2, 2],
        [1, 2, 3, 4],
        bytes.fromhex("000000000000f03f000000000000004000000000000008400000000000001040"),
    )
    array("float32", [2], [1, -0.5], bytes.fromhex("0000803f000000bf"))
    array("int8", [3], [-1, 0, 127], bytes.fromhex("ff007f"))
    array("uint8", [2, 1], [0, 255], bytes.fromhex("00ff"))
    array("int16", [2], [-2, 258], bytes.fromhex("feff0201"))
    array("uint16", [1], [65535], bytes.fromhex("ffff"))
    array("int32", [2], [-1, 16909060], bytes.fromhex("ffffffff04030201"))
    array("uint32", [1], [4294967295], bytes.fromhex("ffffffff"))
    array("int64", [2], [-1, 72623859790382856], bytes.fromhex("ffffffffffffffff0807060504030201"))
    array("uint64", [1], [1], bytes.fromhex("0100000000000000"))
    array("bool", [3], [True, False, True], bytes.fromhex("010001"))
    array("float64", [0], [], b"")
    case(
        "an object with a $bothways member of its own",
        [packed("object", value={"$bothways": "ref", "n": [packed("bytes", base64="AQ==")]})],
        [{"$bothways": "ref", "n": [{"$bytes": "01"}]}],
    )
    case(
        "markers deep inside",
        {"a": [{"b": packed("bytes", base64="/w==")}]},
        {"a": [{"b": {"$bytes": "ff"}}]},
    )
    c.append(
        {
            "name": "bytes and an array in binary frames",
            "tree": [packed("bytes", blob=1), {"a": packed("array", dtype="int16", shape=[2], blob=0)}],
            "blobs": ["feff0201", "0a0b"],
            "value": [
                {"$bytes": "0a0b"},
                {"a": {"$array": {"dtype": "int16", "shape": [2], "items": [-2, 258]}}},
            ],
            "both": False,
        }
    )
    c.append(
        {
            "name": "a frame that did not come",
            "tree": [packed("bytes", blob=1)],
            "blobs": ["00"],
            "error": "$[0].blob: no binary frame 1 came with the message (it brought 1)",
        }
    )
    case(
        "a frame number that is not a number",
        [packed("bytes", blob="0")],
        error="$[0].blob: expected a frame number",
    )
    case("padding is required", [packed("bytes", base64="AAE")], error="$[0].base64: invalid base64")
    case("not base64", [packed("bytes", base64="!!!!")], error="$[0].base64: invalid base64")
    case(
        "base64 must be a string",
        {"x": packed("bytes", base64=5)},
        error="$.x.base64: expected a base64 string",
    )
    case(
        "unknown kind",
        {"a b": [packed("gizmo")]},
        error='$["a b"][0].$bothways: unknown marker kind "gizmo"',
    )
    case("a kind that is not a string", [packed(7)], error="$[0].$bothways: unknown marker kind 7")
    # null names no kind: a marker all the same (the member is there)
    case("a null kind", {"a": packed(None)}, error="$.a.$bothways: unknown marker kind null")
    # numbers in messages are written as JavaScript writes them
    case("a float kind", [packed(1e-05)], error="$[0].$bothways: unknown marker kind 0.00001")
    case("a big float kind", [packed(1e16)], error="$[0].$bothways: unknown marker kind 10000000000000000")
    case("yours without an id", [packed("yours")], error="$[0].id: expected an integer")
    case("yours with a list as id", [packed("yours", id=[1])], error="$[0].id: expected an integer")
    # JSON has one number type: 1.0 is the integer 1 (JavaScript cannot tell them apart)
    c.append(
        {
            "name": "an integral float is an integer",
            "tree": [packed("bytes", blob=0.0), packed("array", dtype="uint8", shape=[2.0], blob=0.0)],
            "blobs": ["0a0b"],
            "value": [{"$bytes": "0a0b"}, {"$array": {"dtype": "uint8", "shape": [2], "items": [10, 11]}}],
            "both": False,
        }
    )
    case(
        "an array of 65 dimensions",
        [packed("array", dtype="uint8", shape=[1] * 65, base64="AA==")],
        error="$[0].shape: at most 64 dimensions, got 65",
    )
    case(
        "an array of 64 dimensions",
        [packed("array", dtype="uint8", shape=[1] * 64, base64="AA==")],
        [{"$array": {"dtype": "uint8", "shape": [1] * 64, "items": [0]}}],
        both=False,
    )
    # (a tree nesting 1,021 deep: tests/fuzz/corpus/objects/tree-nested-1021-deep.jsonl)
    case(
        "a tree inside a tree", [packed("tree", value=1)], error='$[0].$bothways: unknown marker kind "tree"'
    )
    case(
        "unknown dtype",
        [packed("array", dtype="complex128", shape=[1], base64="")],
        error='$[0].dtype: unknown dtype "complex128" (expected one of bool, int8, uint8, int16, uint16, '
        "int32, uint32, int64, uint64, float32, float64)",
    )
    case(
        "a shape that is not a list",
        [packed("array", dtype="uint8", shape=2, base64="AAA=")],
        error="$[0].shape: expected a list of non-negative integers",
    )
    case(
        "a negative dimension",
        [packed("array", dtype="uint8", shape=[-1], base64="")],
        error="$[0].shape: expected a list of non-negative integers",
    )
    case(
        "bytes that do not fill the shape",
        [packed("array", dtype="float64", shape=[2, 3], base64=b64(bytes(40)))],
        error="$[0].base64: 40 bytes do not fill shape [2,3] of float64 (48 bytes)",
    )
    case("an escape without an object", [packed("object", value=[1])], error="$[0].value: expected an object")
    case(
        "a ref without an id",
        [packed("ref", kind="object", type="T")],
        error="$[0].id: expected a positive integer",
    )
    case(
        "a ref id of 0",
        [packed("ref", id=0, kind="object", type="T")],
        error="$[0].id: expected a positive integer",
    )
    case(
        "a ref of an unknown kind",
        [packed("ref", id=1, kind="widget", type="T")],
        error="$[0].kind: expected one of function, class, object, iterator",
    )
    case("a ref without a type", [packed("ref", id=1, kind="object")], error="$[0].type: expected a string")
    case(
        "a ref whose class is not a number",
        [packed("ref", id=1, kind="object", type="T", **{"class": "C"})],
        error="$[0].class: expected an integer",
    )
    case(
        "methods that are not names",
        [packed("ref", id=1, kind="object", type="T", methods=[1], **{"class": 1})],
        error="$[0].methods: expected a list of names",
    )
    case(
        "a handle given back that is not held",
        [packed("yours", id=99)],
        error="handle 99 is not held here (released, or never lent)",
    )
    return c


def write(name: str, description: str, cases: list[dict[str, Any]]) -> None:
    doc = {"description": description, "cases": cases}
    # ASCII with \u escapes: lone surrogates survive, and every JSON reader loads the file
    text = json.dumps(doc, ensure_ascii=True, indent=1)
    (HERE / name).write_text(text + "\n", encoding="ascii")


def main() -> None:
    write(
        "values.json",
        "encode/decode of single values (format: tests/unit/test_vectors.py). Tagged values: "
        '{"$float": "nan"|"inf"|"-inf"|"-0"} is that float, {"$bigint": "digits"} an int beyond '
        '2**53 (JS: BigInt), {"$nested": n} n arrays nested in each other ([[...]]).',
        values(),
    )
    write(
        "streams.json",
        "Decoder events for NDJSON streams, whatever the chunking (flat event form: spec/PROTOCOL.md "
        "section 2). Messages may hold the same tagged values as values.json.",
        streams(),
    )
    write(
        "rpc.json",
        "Steps driving RpcEndpoint (format: tests/unit/test_rpc.py): receive a message and expect "
        "events; request/notify/cancel/forget/respond/respond_error/parse_error; send: what "
        "messages_to_send() drains; pending: the ids still in flight.",
        rpc(),
    )
    write(
        "readings.json",
        "to_reading of the telemetry app (format: tests/unit/test_readings.py): value from source, "
        "received at now, with seqs given so far, becomes reading (seqs then seqs_after, when "
        "given), or is invalid with that reason.",
        readings(),
    )
    write(
        "objects.json",
        "Trees of spec/PROTOCOL.md section 10 (format: tests/unit/test_objects.py): tree becomes "
        'value, or fails with error (a HandleError\'s message). Tagged values: {"$bytes": "hex"} is '
        'bytes, {"$array": {"dtype", "shape", "items"}} a typed array (items flat, C order). When '
        "both is true, value is also sent as tree. blobs: the binary frames (hex) that came "
        "with the message.",
        objects(),
    )


if __name__ == "__main__":
    main()
