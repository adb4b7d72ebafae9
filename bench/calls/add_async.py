"""add(a, b) as a coroutine function: bothways.host runs it on its event loop (a plain ``def``
runs in the host's thread pool, see add.py)."""


async def add(a: int, b: int) -> int:
    return a + b
