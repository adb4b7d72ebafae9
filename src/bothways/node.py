"""Call a JavaScript module's exported functions from Python: ``bothways.node.require("./m.js")``.

    from bothways import node
    stats = node.require("./stats.js")      # a Node child serving the module (js/bin/host.mjs)
    stats.mean([1, 2, 3])                    # -> 2, JSON values in and out
    stats.close()                            # or: with node.require(...) as stats:

``async_require`` is the asyncio flavour (``await m.mean([1, 2])``). Remote exceptions arrive as
RemoteError with the JavaScript error's name and stack; a crashed child fails every pending call
with ChildExited. The child ends with the handle (``close``, the ``with`` block, or our exit).
The calls travel on a socket of their own (``spawn``'s ``channel_fd``): ``console.log`` or
``process.stdout.write`` in the module cannot corrupt them, and its stdout and stderr lines are
shown on our stderr (``stderr=`` decides: "forward", "keep" or a callable per line).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any

from ._version import __version__
from .errors import ConnectError, RemoteError
from .objects import CALL_MAX_LINE
from .peer import Caller, Peer
from .rpc import HELLO_METHOD, hello, hello_refusal, speaks_binary
from .transports.stdio import StderrMode, async_spawn, spawn

__all__ = ["AsyncJsModule", "JsModule", "async_require", "require"]


_HERE = Path(__file__).resolve().parent
HOSTS = (
    _HERE / "js" / "bin" / "host.mjs",  # the wheel's copy (setup.py puts the Node side there)
    _HERE.parents[1] / "js" / "bin" / "host.mjs",  # a checkout (an editable install)
)


def _host_script() -> Path:
    """The Node host: BOTHWAYS_JS_HOST, else the one the wheel carries, else the checkout's."""
    override = os.environ.get("BOTHWAYS_JS_HOST")
    if override:
        return Path(override)
    for host in HOSTS:
        if host.is_file():
            return host
    raise ConnectError(
        "bothways' Node host is missing from this installation (looked in: "
        + ", ".join(str(h) for h in HOSTS)
        + "); reinstall bothways, or set BOTHWAYS_JS_HOST",
        url=str(HOSTS[0]),
    )


def _existing_module(path: str | os.PathLike[str]) -> Path:
    """The absolute path of the module (one stat: quick enough before spawning a process)."""
    module = Path(path).resolve()
    if not module.is_file():
        raise ConnectError("no such JavaScript module", url=str(module))
    return module


def _argv(module: Path, node: str | None) -> list[str]:
    """The command of a Node child serving ``module``."""
    program = node or os.environ.get("BOTHWAYS_NODE") or shutil.which("node") or "node"
    return [program, str(_host_script()), str(module)]


_HELLO = hello(__version__, "python")


def _greeted(module: Path, answer_or_error: Any) -> list[str]:
    """The functions a Node host lists in its answer to our ``$/hello``; ConnectError when it
    speaks another protocol (or refused ours), naming both versions."""
    if isinstance(answer_or_error, RemoteError):
        raise ConnectError(answer_or_error.reason, url=str(module)) from answer_or_error
    refusal = hello_refusal(_HELLO, answer_or_error)
    if refusal is not None:
        raise ConnectError(refusal, url=str(module))
    return [str(name) for name in answer_or_error.get("functions", [])]


def _not_exported(path: str, name: str, functions: list[str]) -> AttributeError:
    return AttributeError(f"{path} exports no function {name!r} (it has: {', '.join(functions)})")


class AsyncJsModule:
    """A JavaScript module in a Node child; each exported function is an awaitable attribute."""

    def __init__(self, peer: Peer, functions: list[str], path: str) -> None:
        self._peer = peer
        self.functions = functions
        self.path = path

    def __getattr__(self, name: str) -> Callable[..., Coroutine[Any, Any, Any]]:
        if name.startswith("_") or name not in self.functions:
            raise _not_exported(self.path, name, self.functions)

        async def call(*args: Any, timeout: float | None = None) -> Any:
            return await self._peer.call(name, *args, timeout=timeout)

        return call

    async def close(self) -> None:
        """Ends the Node child."""
        await self._peer.close()

    async def __aenter__(self) -> AsyncJsModule:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


async def async_require(
    path: str | os.PathLike[str], *, node: str | None = None, stderr: StderrMode = "forward"
) -> AsyncJsModule:
    """Starts a Node child serving the module at ``path`` (relative to the working directory)."""
    module = _existing_module(path)
    child = await async_spawn(
        _argv(module, node),
        name=f"node {module.name}",
        stderr=stderr,
        channel_fd=True,  # console.log and friends in the module cannot reach the protocol
        max_line=CALL_MAX_LINE,
        binary=True,
    )
    peer = await Peer(child).start()
    try:
        try:
            answer: Any = await peer.call(HELLO_METHOD, **_HELLO)
        except RemoteError as exc:
            answer = exc
        functions = _greeted(module, answer)
        peer.binary = speaks_binary(answer)  # bytes and arrays in binary frames from now on
    except BaseException:
        await peer.close()
        raise
    return AsyncJsModule(peer, functions, str(module))


class JsModule:
    """The blocking flavour: attributes are functions, and each call is made in the calling
    thread (no event loop, no thread of ours; quicker than the asyncio flavour, see
    bench/RESULTS.md). Threads may call at once; their calls are in flight together (see
    ``peer.Caller``)."""

    def __init__(
        self, path: str | os.PathLike[str], *, node: str | None = None, stderr: StderrMode = "forward"
    ) -> None:
        module = _existing_module(path)
        self.path = str(module)
        self._caller = Caller(
            spawn(
                _argv(module, node),
                name=f"node {module.name}",
                stderr=stderr,
                channel_fd=True,  # console.log and friends in the module cannot reach the protocol
                max_line=CALL_MAX_LINE,
                binary=True,
            )
        )
        try:
            try:
                answer: Any = self._caller.call(HELLO_METHOD, **_HELLO)
            except RemoteError as exc:
                answer = exc
            self.functions: list[str] = _greeted(module, answer)
            self._caller.binary = speaks_binary(answer)  # bytes and arrays in binary frames
        except BaseException:
            self._caller.close()
            raise

    def __getattr__(self, name: str) -> Callable[..., Any]:
        functions = self.__dict__.get("functions", [])  # (not self.functions: not set yet in __init__)
        if name.startswith("_") or name not in functions:
            raise _not_exported(self.__dict__.get("path", "the module"), name, functions)
        call = self._caller.call

        def function(*args: Any, timeout: float | None = None) -> Any:
            return call(name, *args, timeout=timeout)

        return function

    def close(self) -> None:
        """Ends the Node child."""
        self._caller.close()

    def __enter__(self) -> JsModule:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def require(path: str | os.PathLike[str], **options: Any) -> JsModule:
    """Starts a Node child serving the JavaScript module at ``path``; see the module docs."""
    return JsModule(path, **options)
