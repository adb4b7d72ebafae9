"""Transports: thin adapters that move NDJSON bytes and hand them to the wire core.

Every channel offers ``send``, ``receive``, iteration, ``close`` and the context manager, in a
blocking flavour (``Channel``) and an asyncio flavour (``AsyncChannel``) with the same names.
"""

from .base import AsyncChannel, Channel, Inbox, MemoryChannel, memory_pair
from .stdio import AsyncChild, Child, StdioChannel, Supervisor, async_spawn, spawn, stdio, supervise

__all__ = [
    "AsyncChannel",
    "AsyncChild",
    "Channel",
    "Child",
    "Inbox",
    "MemoryChannel",
    "StdioChannel",
    "Supervisor",
    "async_spawn",
    "memory_pair",
    "spawn",
    "stdio",
    "supervise",
]
