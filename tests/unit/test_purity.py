"""The sans-I/O rule: the core modules import nothing that does I/O or reads the clock."""

from __future__ import annotations

import ast
import re

import pytest

from ..conftest import ROOT

CORE = ["wire.py", "errors.py", "rpc.py"]
ALLOWED = {
    "__future__",
    "collections.abc",
    "dataclasses",
    "decimal",
    "json",
    "math",
    "re",
    "typing",
    "orjson",
    "errors",
    ".errors",
}


@pytest.mark.parametrize("name", CORE)
def test_core_imports_no_io(name: str) -> None:
    tree = ast.parse((ROOT / "src" / "bothways" / name).read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add("." * node.level + (node.module or ""))
    assert imported <= ALLOWED, imported - ALLOWED


def test_js_core_imports_no_node_modules() -> None:
    for name in ("wire.js", "errors.js", "index.js", "rpc.js"):
        text = (ROOT / "js" / "src" / name).read_text(encoding="utf-8")
        code = re.sub(r"/\*.*?\*/|//[^\n]*", "", text, flags=re.S)  # comments may name them
        imports = re.findall(r"""(?:from|import)\s*\(?\s*['"]([^'"]+)['"]""", code)
        assert all(spec.startswith("./") for spec in imports), (name, imports)
        assert "require(" not in code and "process." not in code, name
        assert "Date.now" not in code and "performance.now" not in code, name
