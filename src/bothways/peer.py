"""Peer: JSON-RPC calls both ways over any AsyncChannel, on top of the sans-I/O RpcEndpoint.

    async with Peer(channel) as peer:
        peer.expose(math.hypot)                 # the other side may call "hypot"
        await peer.call("mean", [1, 2, 3])      # we call the other side's "mean"

Rules:
- One reader task takes every incoming message; each incoming request runs in a task of its own,
  so many calls are in flight both ways and a handler may call back into its caller.
- A handler that raises answers with the exception's type, message and traceback: the caller
  gets a RemoteError that reads like a local traceback.
- Cancelling a call (task cancel, or ``timeout=``) tells the other side, which cancels the handler.
- When the channel ends (the child exits, the socket closes), every pending call fails at once
  with that cause: never a hang.
"""

from __future__ import annotations

import asyncio
import inspect
import traceback
from collections.abc import Callable
from types import TracebackType
from typing import Any

from .errors import BothwaysError, CallTimeout, EncodeError, TransportClosed
from .rpc import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    REQUEST_CANCELLED,
    SERVER_ERROR,
    Cancelled,
    ErrorResponse,
    Notification,
    Request,
    Response,
    RpcEndpoint,
)
from .transports.base import AsyncChannel, log

__all__ = ["Peer"]


class Peer:
    """Calls both ways over ``channel``. Use ``async with``; ``close()`` closes the channel."""

    def __init__(self, channel: AsyncChannel) -> None:
        self.channel = channel
        self.endpoint = RpcEndpoint()
        self.functions: dict[str, Callable[..., Any]] = {}
        self.notification_handler: Callable[[str, Any], Any] | None = None
        self._waiting: dict[Any, asyncio.Future[Any]] = {}
        self._serving: dict[Any, asyncio.Task[None]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._closed: BothwaysError | None = None

    def expose(self, function: Callable[..., Any] | None = None, *, name: str | None = None) -> Any:
        """Lets the other side call ``function`` (sync or async) by ``name`` (default: its name).

        Usable as ``peer.expose(f)``, ``@peer.expose`` or ``@peer.expose(name="x")``.
        """
        if function is None:
            return lambda f: self.expose(f, name=name)
        self.functions[name or function.__name__] = function
        return function

    async def start(self) -> Peer:
        """Starts reading the channel (``async with`` does it)."""
        if self._reader is None:
            self._reader = asyncio.ensure_future(self._read())
        return self

    async def run(self) -> None:
        """Serves until the other side closes the channel (for a process that only serves)."""
        await self.start()
        assert self._reader is not None
        await self._reader

    async def __aenter__(self) -> Peer:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def call(self, method: str, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        """Calls ``method`` on the other side with positional or keyword arguments (not both).

        Raises:
            RemoteError: the remote function raised (type, message, traceback inside).
            CallTimeout: no answer within ``timeout`` seconds (the other side is told to stop).
            TransportClosed, ChildExited: the connection ended before the answer.
        """
        if self._closed is not None:
            raise self._closed
        if args and kwargs:
            raise TypeError("JSON-RPC takes positional or keyword arguments, not both")
        call_id = self.endpoint.request(method, list(args) if args else (kwargs or None))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[call_id] = future
        try:
            await self._flush()
        except BaseException:  # the arguments could not be sent (EncodeError...): forget the call
            self.endpoint.cancel(call_id)
            self.endpoint.messages_to_send()  # nothing was sent: no cancel notice either
            self._waiting.pop(call_id, None)
            raise
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except asyncio.TimeoutError:
            await self._give_up(call_id)
            raise CallTimeout(f"{method}: no answer within {timeout} s") from None
        except asyncio.CancelledError:
            await self._give_up(call_id)
            raise
        finally:
            self._waiting.pop(call_id, None)

    async def notify(self, method: str, *args: Any, **kwargs: Any) -> None:
        """Sends a notification: no answer, no error back."""
        self.endpoint.notify(method, list(args) if args else (kwargs or None))
        await self._flush()

    async def close(self) -> None:
        """Closes the channel; pending calls fail with TransportClosed."""
        if self._reader is not None:
            self._reader.cancel()
        self._fail(TransportClosed("the peer was closed"))
        for task in list(self._serving.values()):
            task.cancel()
        await self.channel.close()

    async def _give_up(self, call_id: Any) -> None:
        if self.endpoint.cancel(call_id):
            try:
                await self._flush()
            except BothwaysError:
                pass

    async def _flush(self) -> None:
        for message in self.endpoint.messages_to_send():
            try:
                await self.channel.send(message)
            except EncodeError as exc:
                if not (isinstance(message, dict) and "result" in message):
                    raise
                # the handler returned something that cannot cross: say so to the caller
                data = {"type": "EncodeError", "traceback": ""}
                self.endpoint.respond_error(message["id"], INTERNAL_ERROR, f"result: {exc}", data)
                await self.channel.send(self.endpoint.messages_to_send()[0])

    async def _read(self) -> None:
        try:
            async for message in self.channel:
                self._dispatch(self.endpoint.receive(message))
                await self._flush()
            self._fail(TransportClosed("the other side closed the connection"))
        except BothwaysError as exc:  # ChildExited with its stderr tail, a socket error...
            self._fail(exc)

    def _fail(self, cause: BothwaysError) -> None:
        if self._closed is None:
            self._closed = cause
        for event in self.endpoint.fail_all(cause):
            self._settle(event.id, event.error)

    def _settle(self, call_id: Any, error: BaseException | None, result: Any = None) -> None:
        future = self._waiting.get(call_id)
        if future is None or future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def _dispatch(self, events: list[Any]) -> None:
        for event in events:
            if isinstance(event, Response):
                self._settle(event.id, None, event.result)
            elif isinstance(event, ErrorResponse):
                self._settle(event.id, event.error)
            elif isinstance(event, Request):
                self._serving[event.id] = asyncio.ensure_future(self._serve(event))
            elif isinstance(event, Cancelled):
                task = self._serving.get(event.id)
                if task is not None:
                    task.cancel()
            elif isinstance(event, Notification) and self.notification_handler is not None:
                try:
                    self.notification_handler(event.method, event.params)
                except Exception:  # a failing handler must not stop the reader
                    log.exception("notification handler failed on %r", event.method)

    async def _serve(self, request: Request) -> None:
        endpoint = self.endpoint
        try:
            function = self.functions.get(request.method)
            if function is None:
                endpoint.respond_error(request.id, METHOD_NOT_FOUND, f"Method not found: {request.method}")
                return
            args, kwargs = _arguments(request.params)
            try:
                inspect.signature(function).bind(*args, **kwargs)
            except TypeError as exc:
                endpoint.respond_error(request.id, INVALID_PARAMS, f"Invalid params: {exc}")
                return
            except ValueError:  # no signature to check (some builtins): let the call decide
                pass
            try:
                result = function(*args, **kwargs)
                if inspect.isawaitable(result):
                    result = await result
            except asyncio.CancelledError:
                endpoint.respond_error(request.id, REQUEST_CANCELLED, "Request cancelled")
                return
            except Exception as exc:  # noqa: BLE001 - every error goes back to the caller
                data = {"type": type(exc).__name__, "traceback": traceback.format_exc()}
                endpoint.respond_error(request.id, SERVER_ERROR, str(exc), data)
                return
            endpoint.respond(request.id, result)
        finally:
            self._serving.pop(request.id, None)
            try:
                await self._flush()
            except BothwaysError:
                pass  # the connection is gone: nobody to answer


def _arguments(params: Any) -> tuple[list[Any], dict[str, Any]]:
    if isinstance(params, list):
        return params, {}
    if isinstance(params, dict):
        return [], params
    return [], {}
