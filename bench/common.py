"""What every benchmark shares: the machine line, a helper process's JSON result, and ``record()``,
which rewrites a benchmark's section of RESULTS.md and writes the same rows, as data, beside it.

The sidecar of section NAME is ``results/NAME.json`` next to the Markdown file:

    {"section": NAME, "date": "YYYY-MM-DD", "heading": "## ...", "settings": {...},
     "tables": [[{column header: value, ...}, ...], ...]}

one list of rows per table of the section, each row keyed by the table's column headers (and
maybe a few more keys, e.g. the percentiles a table does not show), with numbers as numbers.
bench/report.py draws the charts from these files; for a section recorded before sidecars
existed it reads the Markdown table instead (``parse_tables``).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import subprocess
from pathlib import Path
from typing import Any

import orjson

Row = dict[str, Any]
Tables = list[list[Row]]


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    return (
        f"{os.cpu_count()} cores, {cpu}; Python {platform.python_version()}, orjson {orjson.__version__}, "
        f"Node {node}"
    )


def child_result(argv: list[str], cwd: Path | None = None) -> dict[str, Any]:
    """Runs a benchmark's helper process; its last stdout line is its result, as JSON."""
    out = subprocess.run(argv, check=True, capture_output=True, text=True, cwd=cwd)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def markers(section: str) -> tuple[str, str]:
    return f"<!-- {section}:begin -->", f"<!-- {section}:end -->"


def replace_section(old: str, section: str, text: str, after_title: bool = False) -> str:
    """``old`` with the block of ``section`` set to ``text``; a new block goes at the end, or right
    under the first line (the title) when ``after_title``."""
    begin, end = markers(section)
    block = f"{begin}\n{text}\n{end}"
    if begin in old and end in old:
        return old[: old.index(begin)] + block + old[old.index(end) + len(end) :]
    if after_title:
        title, _, rest = old.partition("\n")
        return f"{title}\n\n{block}\n\n{rest.lstrip(chr(10))}"
    return old.rstrip("\n") + "\n\n" + block + "\n"


def section_text(markdown: str, section: str) -> str | None:
    begin, end = markers(section)
    if begin not in markdown or end not in markdown:
        return None
    return markdown[markdown.index(begin) + len(begin) : markdown.index(end)].strip("\n")


def sidecar_path(results: Path, section: str) -> Path:
    return results.parent / "results" / f"{section}.json"


def record(
    path: Path,
    text: str,
    section: str = "codec",
    tables: Tables | None = None,
    settings: dict[str, Any] | None = None,
) -> None:
    """Replaces one section of RESULTS.md (between its markers) with ``text``, and writes its
    sidecar: ``tables`` (the rows the section's tables show, as numbers), or when a benchmark
    gives none, its Markdown tables as ``parse_tables`` reads them."""
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    path.write_text(replace_section(old, section, text))
    data = {
        "section": section,
        "date": datetime.date.today().isoformat(),
        "heading": text.strip().splitlines()[0] if text.strip() else "",
        "settings": settings or {},
        "tables": tables if tables is not None else parse_tables(text),
    }
    side = sidecar_path(path, section)
    side.parent.mkdir(parents=True, exist_ok=True)
    temporary = side.with_name(side.name + ".tmp")
    temporary.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    temporary.replace(side)


_NUMBER = re.compile(r"-?[\d,]*\.?\d+")


def cell_value(cell: str) -> Any:
    """A table cell as data: "1,156,039" -> 1156039.0, "3.67x" -> 3.67, "" or "—" -> None, and
    anything else as its text."""
    text = cell.strip()
    if text in ("", "—", "-"):
        return None
    bare = text[:-1] if text.endswith("x") else text
    if _NUMBER.fullmatch(bare):
        return float(bare.replace(",", ""))
    return text


def _cells(line: str) -> list[str]:
    inner = line.strip()
    inner = inner[1:] if inner.startswith("|") else inner
    inner = inner[:-1] if inner.endswith("|") else inner
    return [cell.strip() for cell in inner.split("|")]


def parse_tables(markdown: str) -> Tables:
    """Every pipe table of ``markdown``, each as rows keyed by its header cells (``cell_value``)."""
    tables: Tables = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines) - 1:
        rule = lines[i + 1].strip()
        if lines[i].strip().startswith("|") and re.fullmatch(r"\|?(\s*:?-+:?\s*\|)+\s*:?-*:?\s*\|?", rule):
            headers = _cells(lines[i])
            rows = []
            i += 2
            while i < len(lines) and lines[i].strip().startswith("|"):
                cells = _cells(lines[i])
                cells += [""] * (len(headers) - len(cells))
                rows.append({h: cell_value(c) for h, c in zip(headers, cells, strict=False)})
                i += 1
            tables.append(rows)
        else:
            i += 1
    return tables


def load_tables(results: Path, section: str) -> tuple[Tables, str]:
    """The tables of one section of ``results``: from its sidecar when that matches the section's
    heading, else parsed from the Markdown. Also says which ("sidecar" or "markdown")."""
    markdown = results.read_text() if results.exists() else ""
    text = section_text(markdown, section)
    side = sidecar_path(results, section)
    if side.exists():
        data = json.loads(side.read_text())
        heading = text.strip().splitlines()[0] if text and text.strip() else None
        if heading is None or heading == data.get("heading"):
            return data["tables"], "sidecar"
    if text is None:
        return [], "missing"
    return parse_tables(text), "markdown"
