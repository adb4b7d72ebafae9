"""The Python and JavaScript packages export the same names, under snake_case <-> camelCase."""

from __future__ import annotations

import json
import re
import subprocess

import bothways
from bothways import Decoder

from ..conftest import ROOT, require_tool


def camel(name: str) -> str:
    if name.isupper() or not re.search(r"_[a-z]", name):
        return name
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def js_exports() -> dict[str, list[str]]:
    node = require_tool("node")
    script = (
        "const m = await import('./js/src/index.js');"
        "const d = new m.Decoder();"
        "const proto = Object.getOwnPropertyNames(Object.getPrototypeOf(d)).filter(n => n !== 'constructor');"
        "console.log(JSON.stringify({module: Object.keys(m).sort(), decoder: proto.sort()}));"
    )
    out = subprocess.run(
        [node, "--input-type=module", "-e", script], cwd=ROOT, capture_output=True, check=True
    )
    result: dict[str, list[str]] = json.loads(out.stdout)
    return result


def test_module_exports_match() -> None:
    exported = js_exports()
    # Python's asyncio flavours (async_connect) are JavaScript's plain names, already async.
    python = {camel(n.removeprefix("async_")) for n in bothways.__all__}
    assert sorted(python) == exported["module"]


def test_decoder_methods_match() -> None:
    exported = js_exports()
    python = sorted(camel(n) for n in dir(Decoder) if not n.startswith("_"))
    assert python == exported["decoder"]
