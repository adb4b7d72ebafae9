"""``connect(url)`` and ``listen(url)``: one table from URL scheme to transport.

A program changes channel by changing a URL::

    with bothways.listen("tcp://127.0.0.1:9000") as inbox:      # or ws://, fifo:, file:, mqtt://
        for reading in inbox:
            ...

    with bothways.connect("tcp://127.0.0.1:9000") as out:
        out.send({"sensor": "kitchen", "celsius": 21.5})

``connect`` is the sending (client) side and ``listen`` the receiving (server) side; on tcp and
ws both are duplex. One URL serves both ends: each takes the query options that apply to it.
Keyword options override the URL's (``token``, ``max_line``,
``on_error``, ``reconnect``, ``timeout`` and each transport's own). The asyncio flavours,
``async_connect`` and ``async_listen``, take the same arguments. Mirrors ``js/src/channels.js``.
"""

from __future__ import annotations

import importlib
from typing import Any

from .transports.base import AsyncChannel, AsyncListener, Channel, Listener
from .urls import Address, parse

__all__ = ["TRANSPORTS", "async_connect", "async_listen", "connect", "listen"]

TRANSPORTS = {
    "stdio": "bothways.transports.stdio",
    "tcp": "bothways.transports.tcp",
    "ws": "bothways.transports.ws",
    "fifo": "bothways.transports.fifo",
    "file": "bothways.transports.file",
    "mqtt": "bothways.transports.mqtt",
    "mqtts": "bothways.transports.mqtt",
    "mqtt+ws": "bothways.transports.mqtt",
    "mqtt+wss": "bothways.transports.mqtt",
}
"""The one table from scheme to the module that implements it (imported on first use).

Each module offers ``connect``, ``listen``, ``async_connect`` and ``async_listen``, taking the
parsed Address and the options as keywords.
"""


def _resolve(url: str | Address, side: str, options: dict[str, Any]) -> tuple[Any, Address, dict[str, Any]]:
    address = url if isinstance(url, Address) else parse(url)
    module = importlib.import_module(TRANSPORTS[address.scheme])
    return module, address, {**address.params_for(side), **options}


def connect(url: str | Address, **options: Any) -> Channel:
    """Opens the sending side of ``url`` (a client, a FIFO's or a file's writer)."""
    module, address, merged = _resolve(url, "connect", options)
    channel: Channel = module.connect(address, **merged)
    return channel


def listen(url: str | Address, **options: Any) -> Listener:
    """Opens the receiving side of ``url`` (a server, a FIFO's or a file's reader)."""
    module, address, merged = _resolve(url, "listen", options)
    listener: Listener = module.listen(address, **merged)
    return listener


async def async_connect(url: str | Address, **options: Any) -> AsyncChannel:
    """The asyncio flavour of ``connect``."""
    module, address, merged = _resolve(url, "connect", options)
    channel: AsyncChannel = await module.async_connect(address, **merged)
    return channel


async def async_listen(url: str | Address, **options: Any) -> AsyncListener:
    """The asyncio flavour of ``listen``."""
    module, address, merged = _resolve(url, "listen", options)
    listener: AsyncListener = await module.async_listen(address, **merged)
    return listener
