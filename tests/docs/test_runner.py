"""The README runner itself: it reads the conventions strictly, and a block that stops working
fails (wrong output, output not promised, an exit code, a hang, a process left behind)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from . import runner
from .markdown import Block, ConventionError, expected_output, match, parse


def one(markdown: str) -> Block:
    (block,) = parse(markdown)
    return block


def test_match_is_exact_after_stripping() -> None:
    assert match(["a", "b c"], ["  a", "b c  "])
    assert not match(["a"], ["a", "b"])
    assert not match(["a", "b"], ["a"])
    assert not match(["b c"], ["b  c"])


def test_wildcards() -> None:
    assert match(["line 2, col …: bad"], ["line 2, col 18: bad"])
    assert not match(["line 2, col …: bad"], ["line 2, col 18: worse"])
    assert match(["start", "…"], ["start"])
    assert match(["start", "…", "end"], ["start", "x", "y", "end"])
    assert not match(["start", "…", "end"], ["start", "x"])


def test_expected_output_of_each_language() -> None:
    python = one('```python\nfor x in (1, 2):\n    print(x)  # -> 1\n# -> 2\ns = "# -> not me"\n```\n')
    assert expected_output(python) == ["1", "2"]
    js = one("```js\nconsole.log(1);  // -> 1\n// -> …\nconst x = 2;\n```\n")
    assert expected_output(js) == ["1", "…"]
    sh = one("```sh\necho a   # a remark\n# a\nprintf 'b\\nc\\n'\n# b\n# c\n```\n")
    assert expected_output(sh) == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("markdown", "complaint"),
    [
        ("<!-- test: skip -->\n```sh\nls\n```\n", "needs a reason"),
        ("<!-- test: sometimes -->\n```sh\nls\n```\n", "unknown directive"),
        ("<!-- test: background -->\n```sh\nls\n```\n```sh\nls\n```\n", "needs `port=N`"),
        ("<!-- test: background port=9 -->\n```sh\nls\n```\n", "no block after it"),
        ("<!-- test: files -->\n```python\nx = 1\n```\n", "needs `name=FILE`"),
        ("```python\nx = 1  # -> 1\n```\n", "only for the output of `print("),
        ("```python\nx = 1\n# -> 1\n```\n", "right after a line with `print("),
        ("```js\nlet x = 1;  // -> 1\n```\n", "only for the output of `console.log("),
        ("```sh\n# hello\necho hello\n```\n", "before any command"),
        ("```ruby\nputs 1\n```\n", "no runner for ```ruby"),
        ("```python\nprint(1)\n", "never ends"),
        ("<!-- test: skip (a reason) -->\n\nSome prose.\n\n```sh\nls\n```\n", "right before a block"),
    ],
)
def test_broken_conventions_are_refused(markdown: str, complaint: str) -> None:
    with pytest.raises(ConventionError, match=complaint.replace("(", r"\(")):
        parse(markdown)


def test_text_blocks_are_not_run() -> None:
    assert parse("```\nsrc/  the code\n```\n```text\nanything\n```\n") == []


def test_a_block_that_prints_what_it_says_passes(tmp_path: Path) -> None:
    runner.run_block(one("```python\nprint(6 * 7)  # -> 42\n```\n"), tmp_path, {})


@pytest.mark.parametrize(
    ("markdown", "complaint"),
    [
        ("```python\nprint(6 * 7)  # -> 43\n```\n", "prints something else"),
        ("```js\nconsole.log(42);\n```\n", "prints something else"),  # promised nothing
        ("```sh\necho 42\n# 42\nfalse\n```\n", "exit code 1"),
        ("```python\nimport no_such_module\n```\n", "exit code 1"),
    ],
)
def test_a_block_that_stops_working_fails(tmp_path: Path, markdown: str, complaint: str) -> None:
    with pytest.raises(AssertionError, match=complaint):
        runner.run_block(one(markdown), tmp_path, {})


def test_a_hanging_block_is_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "FOREGROUND", 1.0)
    with pytest.raises(AssertionError, match="still running after"):
        runner.run_block(one("```python\nimport time\ntime.sleep(60)\n```\n"), tmp_path, {})


def test_a_process_left_behind_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "LINGER", 1.0)
    # setsid takes the sleeper out of the block's process group: only the mark finds it
    with pytest.raises(AssertionError, match="left processes behind"):
        runner.run_block(one("```sh\nsetsid sleep 60 > /dev/null 2>&1 &\nsleep 0.5\n```\n"), tmp_path, {})


def test_files_and_the_readers_setting(tmp_path: Path) -> None:
    markdown = (
        "<!-- test: files name=helper.py -->\n```python\nANSWER = 42\n```\n"
        "```python\nimport helper\nprint(helper.ANSWER)  # -> 42\n```\n"
        "```js\nimport { encode } from 'bothways';\nconsole.log(encode([1]));  // -> [1]\n// ->\n```\n"
    )
    files, python, js = parse(markdown)
    runner.check_file(files, [files, python, js], tmp_path / "files")
    for block in (python, js):
        runner.run_block(block, tmp_path / block.id, {"helper.py": files.code})


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_a_background_listener_serves_the_next_block(tmp_path: Path) -> None:
    port = free_port()
    markdown = f"""
<!-- test: background port={port} -->
```python
import bothways

with bothways.listen("tcp://127.0.0.1:{port}") as inbox:
    print(inbox.receive())  # -> {{'n': 1}}
```

```python
import bothways

with bothways.connect("tcp://127.0.0.1:{port}") as out:
    out.send({{"n": 1}})
```
"""
    listener, sender = parse(markdown)
    assert sender.background_of is listener and listener.group == [sender]
    backgrounds = runner.Backgrounds()
    try:
        backgrounds.ensure(listener, lambda: tmp_path / "listener", {})
        assert runner.listening(port) == {"127.0.0.1"}
        runner.run_block(sender, tmp_path / "sender", {})
        backgrounds.finish(listener)
    finally:
        backgrounds.stop_all()
    assert not runner.listening(port)


def test_a_background_that_does_not_end_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "ENDING", 1.0)
    port = free_port()
    listener = parse(
        f"<!-- test: background port={port} -->\n```python\nimport socket, time\n"
        f"s = socket.create_server(('127.0.0.1', {port}))\ntime.sleep(60)\n```\n```sh\ntrue\n```\n"
    )[0]
    backgrounds = runner.Backgrounds()
    try:
        backgrounds.ensure(listener, lambda: tmp_path / "bg", {})
        with pytest.raises(AssertionError, match="did not end by itself"):
            backgrounds.finish(listener)
    finally:
        backgrounds.stop_all()
