"""Reading a Markdown file's fenced blocks, the HTML comments that control them, and the output
each block says it prints (the conventions are in test_readme.py's docstring).

Pure functions, no processes: ``parse(text)`` gives the blocks, ``expected_output(block)`` the
lines a block promises, ``match(expected, actual)`` compares them. A broken convention (a
``skip`` without a reason, an ``# ->`` comment on a line that prints nothing...) raises
``ConventionError`` naming the line, so a README cannot drift into blocks the runner misreads.
"""

from __future__ import annotations

import io
import re
import tokenize
from dataclasses import dataclass, field

LANGUAGES = {
    "python": "python",
    "py": "python",
    "js": "js",
    "javascript": "js",
    "mjs": "js",
    "sh": "sh",
    "bash": "sh",
    "shell": "sh",
    "html": "html",
    "json": "json",
    "": "text",  # a fence without a language: shown, not run (a layout, a diagram)
    "text": "text",
}
WILDCARD = "…"  # in an expected line: any text; a line of only it: any number of lines

_FENCE = re.compile(r"^```\s*([\w+-]*)\s*$")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_DIRECTIVE = re.compile(r"^<!--\s*test:\s*(.*?)\s*-->$")
_SKIP = re.compile(r"^skip\s*\((.+)\)$")
_JS_EXPECT = re.compile(r"//\s*->\s?(.*)$")


class ConventionError(Exception):
    """The README breaks one of the runner's conventions (the message names the line)."""


@dataclass
class Block:
    """One fenced block, with what its directive says about it."""

    language: str  # one of LANGUAGES' values
    code: str
    line: int  # 1-based line of the opening fence in the Markdown file
    section: str  # the heading above it ("" before the first heading)
    index: int  # 1-based position among the non-text blocks of its section
    section_number: int = 0  # which section: two headings may say the same
    skip: str | None = None  # the reason, for `skip (reason)`
    background: bool = False
    port: int | None = None  # `background port=N`: ready once 127.0.0.1:N listens
    cwd_repo: bool = False  # `cwd=repo`
    file_name: str | None = None  # `files name=...`: written into the temp dir, not run
    group: list[Block] = field(default_factory=list, repr=False)  # a background's foreground blocks
    background_of: Block | None = field(default=None, repr=False)  # the background this block needs

    @property
    def id(self) -> str:
        """The pytest id: the section heading as a slug, the block's index, its language."""
        slug = re.sub(r"[^a-z0-9]+", "-", self.section.lower()).strip("-") or "top"
        return f"{slug}-{self.index}-{self.language}"

    @property
    def kind(self) -> str:
        if self.skip is not None:
            return "skip"
        if self.file_name is not None:
            return "file"
        if self.background:
            return "background"
        return "run"


def parse(text: str) -> list[Block]:
    """Every fenced block of ``text`` but the text ones, in order, with their directives applied."""
    lines = text.splitlines()
    blocks: list[Block] = []
    section = ""
    section_number = 0
    per_section: dict[int, int] = {}
    number = 0
    while number < len(lines):
        line = lines[number]
        heading = _HEADING.match(line)
        if heading:
            section = heading.group(2)
            section_number += 1
        fence = _FENCE.match(line)
        if not fence:
            if _DIRECTIVE.match(line.strip()) and not _before_fence(lines, number):
                raise ConventionError(f"line {number + 1}: a `test:` comment must stand right before a block")
            number += 1
            continue
        start = number
        language = fence.group(1).lower()
        number += 1
        body: list[str] = []
        while number < len(lines) and lines[number].rstrip() != "```":
            body.append(lines[number])
            number += 1
        if number == len(lines):
            raise ConventionError(f"line {start + 1}: the block never ends (no closing ```)")
        number += 1
        directive = _directive_before(lines, start)
        if language not in LANGUAGES:
            raise ConventionError(
                f"line {start + 1}: no runner for ```{language} (known: {', '.join(sorted(LANGUAGES)[1:])})"
            )
        kind = LANGUAGES[language]
        if kind == "text":
            if directive is not None:
                raise ConventionError(f"line {start + 1}: a text block is never run; drop the directive")
            continue
        per_section[section_number] = per_section.get(section_number, 0) + 1
        block = Block(
            kind, "\n".join(body) + "\n", start + 1, section, per_section[section_number], section_number
        )
        if directive is not None:
            _apply(block, directive)
        blocks.append(block)
    _link_groups(blocks)
    for block in blocks:
        if block.kind in ("run", "background"):
            expected_output(block)  # raises on a misplaced expectation
    return blocks


def _before_fence(lines: list[str], number: int) -> bool:
    """Whether the next non-blank line after ``number`` opens a block."""
    following = (line for line in lines[number + 1 :] if line.strip())
    return bool(_FENCE.match(next(following, "")))


def _directive_before(lines: list[str], fence: int) -> str | None:
    """The `<!-- test: ... -->` on the last non-blank line before the fence, if there is one."""
    number = fence - 1
    while number >= 0 and not lines[number].strip():
        number -= 1
    if number < 0:
        return None
    found = _DIRECTIVE.match(lines[number].strip())
    return found.group(1) if found else None


def _apply(block: Block, directive: str) -> None:
    where = f"line {block.line}"
    skip = _SKIP.match(directive)
    if skip:
        block.skip = skip.group(1).strip()
        return
    if directive.startswith("skip"):
        raise ConventionError(f"{where}: `skip` needs a reason in parentheses: skip (why)")
    for token in directive.split():
        key, _, value = token.partition("=")
        if token == "background":
            block.background = True
        elif key == "port" and value.isdigit():
            block.port = int(value)
        elif token == "cwd=repo":
            block.cwd_repo = True
        elif token == "files":
            block.file_name = ""
        elif key == "name" and value and "/" not in value:
            block.file_name = value
        else:
            raise ConventionError(f"{where}: unknown directive {token!r} in `test: {directive}`")
    if block.file_name == "":
        raise ConventionError(f"{where}: `files` needs `name=FILE`")
    if block.file_name is not None and (block.background or block.cwd_repo or block.port):
        raise ConventionError(f"{where}: a `files` block is written, not run: no other directive")
    if block.background and block.port is None:
        raise ConventionError(f"{where}: `background` needs `port=N` (the runner waits for it to listen)")
    if block.port is not None and not block.background:
        raise ConventionError(f"{where}: `port=` only goes with `background`")


def _link_groups(blocks: list[Block]) -> None:
    """A background block serves the run blocks after it in its section, up to the next background."""
    current: Block | None = None
    names: dict[int, set[str]] = {}
    for block in blocks:
        if current is not None and current.section_number != block.section_number:
            current = None
        if block.file_name is not None:
            taken = names.setdefault(block.section_number, set())
            if block.file_name in taken:
                raise ConventionError(f"line {block.line}: a second file {block.file_name!r} in this section")
            taken.add(block.file_name)
        if block.background:
            current = block
        elif current is not None and block.kind == "run":
            current.group.append(block)
            block.background_of = current
    for block in blocks:
        if block.background and not block.group:
            raise ConventionError(
                f"line {block.line}: a background block with no block after it in its section to serve"
            )


def section_files(blocks: list[Block], block: Block) -> dict[str, str]:
    """The `files` blocks of ``block``'s section: name -> content."""
    return {
        b.file_name: b.code
        for b in blocks
        if b.section_number == block.section_number and b.file_name and b.skip is None
    }


# ------------------------------------------------------------------------------------------
# Expected output


def expected_output(block: Block) -> list[str]:
    """The lines ``block`` says it prints on stdout, in order (see the conventions)."""
    if block.language == "python":
        return _python_expected(block)
    if block.language in ("js", "html"):
        return _marked_expected(block, _JS_EXPECT, "console.log(", "// ->")
    if block.language == "sh":
        return _sh_expected(block)
    return []


def _python_expected(block: Block) -> list[str]:
    """``# -> text`` comments, found by Python's tokenizer (never one inside a string)."""
    comments: dict[int, str] = {}
    try:
        for token in tokenize.generate_tokens(io.StringIO(block.code).readline):
            if token.type == tokenize.COMMENT and re.match(r"#\s*->", token.string):
                comments[token.start[0]] = re.sub(r"^#\s*->\s?", "", token.string)
    except (tokenize.TokenError, SyntaxError) as error:
        raise ConventionError(f"line {block.line}: the Python block does not tokenize: {error}") from error
    return _ordered(block, comments, "print(", "# ->")


def _marked_expected(block: Block, pattern: re.Pattern[str], printer: str, marker: str) -> list[str]:
    comments = {}
    for number, line in enumerate(block.code.splitlines(), 1):
        found = pattern.search(line)
        if found:
            comments[number] = found.group(1)
    return _ordered(block, comments, printer, marker)


def _ordered(block: Block, comments: dict[int, str], printer: str, marker: str) -> list[str]:
    """Checks where the expectations stand: on a printing line, or on lines of their own right
    after one (the further lines of a loop); gives their texts in order."""
    expected = []
    after_printer = False  # the line before prints, or is an expectation of its own
    for number, line in enumerate(block.code.splitlines(), 1):
        comment = comments.get(number)
        own_line = line.strip().startswith(marker)
        if comment is not None:
            if own_line and not after_printer:
                raise ConventionError(
                    f"line {block.line + number}: `{marker}` on a line of its own must come right "
                    f"after a line with `{printer}...)` (or another such line)"
                )
            if not own_line and printer not in line:
                raise ConventionError(
                    f"line {block.line + number}: `{marker}` is only for the output of `{printer}...)`"
                )
            expected.append(comment.strip())
        after_printer = printer in line or (comment is not None and own_line)
    return expected


def _sh_expected(block: Block) -> list[str]:
    """Comment lines right after a command (up to the next command) are its output."""
    expected = []
    seen_command = False
    continued = False
    for number, line in enumerate(block.code.splitlines(), 1):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#") and not continued:
            if not seen_command:
                raise ConventionError(
                    f"line {block.line + number}: a comment line before any command would read as "
                    "output; put remarks at the end of a command line"
                )
            expected.append(re.sub(r"^#\s?", "", stripped).strip())
        else:
            seen_command = True
            continued = stripped.endswith("\\")
    return expected


# ------------------------------------------------------------------------------------------
# Comparing


def _line_pattern(expected: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in expected.split(WILDCARD)), re.DOTALL)


def match(expected: list[str], actual: list[str]) -> bool:
    """Every actual line (stripped) matches the expected line at its place; ``…`` inside a line
    matches any text, a line of only ``…`` any number of lines (none included)."""
    actual = [line.strip() for line in actual]
    memo: dict[tuple[int, int], bool] = {}

    def at(i: int, j: int) -> bool:
        if (i, j) in memo:
            return memo[i, j]
        if i == len(expected):
            result = j == len(actual)
        elif expected[i] == WILDCARD:
            result = at(i + 1, j) or (j < len(actual) and at(i, j + 1))
        else:
            result = (
                j < len(actual)
                and _line_pattern(expected[i]).fullmatch(actual[j]) is not None
                and at(i + 1, j + 1)
            )
        memo[i, j] = result
        return result

    return at(0, 0)


def explain(expected: list[str], actual: list[str]) -> str:
    """Both lists, line by line, for a failure message."""
    width = max((len(line) for line in expected), default=0)
    rows = [f"  {'expected':<{width}} | printed"]
    for i in range(max(len(expected), len(actual))):
        left = expected[i] if i < len(expected) else ""
        right = actual[i].strip() if i < len(actual) else ""
        mark = " " if i < len(expected) and i < len(actual) and _same(left, right) else "!"
        rows.append(f"{mark} {left:<{width}} | {right}")
    return "\n".join(rows)


def _same(expected: str, actual: str) -> bool:
    return expected == WILDCARD or _line_pattern(expected).fullmatch(actual) is not None
