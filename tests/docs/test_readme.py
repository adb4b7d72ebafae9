"""README.md runs as written: every fenced block is a test case, run in a fresh temporary folder.

Each block is a case named after its section heading, its index in the section and its language
(``test_block[channels-one-url-any-transport-2-js]``). How a block is run:

- ``python``: ``sys.executable block.py`` (the virtual environment the tests run in).
- ``js``: ``node block.mjs``; the folder's ``node_modules/bothways`` links to js/, so
  ``import ... from "bothways"`` and its subpaths resolve through the package's exports map.
- ``sh``: ``bash -euo pipefail block.sh``, the virtual environment's bin/ first on PATH.
- ``html``: loaded as a page of http://127.0.0.1:PORT/ in headless Chromium; ``/bothways/*.js``
  serves js/src, as the tutorial's Flask app does. Its output is what it ``console.log``s.
- ``json``: must parse. A block without a language (or ``text``) is shown, not run.

The folder is a reader's project with bothways installed both ways: ``node_modules/bothways``
and ``.venv`` (links to js/ and to the tests' virtual environment), plus the section's files
(below). Python and JavaScript blocks get no ``.venv/bin`` on PATH, no BOTHWAYS_* and no
PYTHONPATH: ``python3`` is whatever the machine has. Every process runs in its own process
group with a timeout (multiples of conftest.UNIT), is ended by its handle, and a process a block
leaves behind fails it.

An HTML comment on the line before a block (blank lines between are fine) controls it:

- ``<!-- test: skip (why) -->``: not run; the reason is required, and at most MAX_SKIPS blocks
  may be skipped.
- ``<!-- test: background port=N -->``: started first and left running ("in another terminal")
  while the run blocks after it in its section, up to the next background block, run; the
  runner waits until 127.0.0.1:N listens (only 127.0.0.1), and skips when N is taken (in CI:
  fails). After them, a server (a block whose promised output ends with a line of only
  ``…``) is stopped once its output matches; any other background block must end by itself,
  with exit code 0 (a listener that takes N messages). Its output is checked either way.
- ``<!-- test: cwd=repo -->``: run from the repository's root (blocks using examples/ paths).
  Combines with background: ``<!-- test: background port=5000 cwd=repo -->``.
- ``<!-- test: files name=worker.py -->``: a file the section's blocks need: written under that
  name into the folder of every block of its section instead of being run (checked: some block
  of the section names it, and it parses).

Expected output, compared with everything the block prints on stdout (stderr is only shown on
failure), in order, each line exactly after stripping spaces:

- Python: ``print(x)  # -> text``; JavaScript and HTML: ``console.log(x);  // -> text``. The
  further lines a loop prints are ``# -> text`` / ``// -> text`` lines of their own right after
  that line. Such a comment on any other line is an error.
- Shell: the comment lines right after a command are its output (remarks go at the end of a
  command line).
- ``…`` inside a line matches any text; a line of only ``…`` matches any number of lines.
- A block that promises nothing must print nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ..conftest import ROOT
from . import runner
from .markdown import Block, ConventionError, parse, section_files

README = ROOT / "README.md"
MAX_SKIPS = 6

try:
    BLOCKS = parse(README.read_text(encoding="utf-8"))
    PARSE_ERROR = ""
except ConventionError as error:
    BLOCKS, PARSE_ERROR = [], str(error)


def test_readme_follows_the_conventions() -> None:
    assert not PARSE_ERROR, f"README.md: {PARSE_ERROR}"
    ids = [block.id for block in BLOCKS]
    assert len(ids) == len(set(ids)), f"two blocks with one test id: {ids}"
    assert any(block.kind == "run" for block in BLOCKS)


def test_skips_are_few_and_say_why() -> None:
    skipped = [f"README line {b.line} ({b.id}): {b.skip}" for b in BLOCKS if b.skip is not None]
    assert len(skipped) <= MAX_SKIPS, "too many skipped blocks:\n" + "\n".join(skipped)
    assert all(b.skip and len(b.skip) >= 10 for b in BLOCKS if b.skip is not None), skipped


@pytest.fixture(scope="module")
def backgrounds() -> Iterator[runner.Backgrounds]:
    running = runner.Backgrounds()
    try:
        yield running
    finally:
        running.stop_all()


# Blocks marked skip are not test cases at all (test_skips_are_few_and_say_why counts them and
# checks their reasons), so that a run reports no skipped test for them.
RUN = [block for block in BLOCKS if block.skip is None]


@pytest.mark.parametrize("block", RUN, ids=[block.id for block in RUN])
def test_block(
    block: Block, backgrounds: runner.Backgrounds, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    files = section_files(BLOCKS, block)
    if block.file_name is not None:
        runner.check_file(block, BLOCKS, tmp_path)
        return
    if block.background:
        backgrounds.ensure(block, lambda: tmp_path, files)
        return
    server = block.background_of
    if server is None:
        runner.run_block(block, tmp_path, files)
        return
    backgrounds.ensure(server, lambda: tmp_path_factory.mktemp("background"), files)
    try:
        runner.run_block(block, tmp_path, files)
    except BaseException:
        backgrounds.finish(server, check=False)
        raise
    if block is server.group[-1]:
        backgrounds.finish(server)
