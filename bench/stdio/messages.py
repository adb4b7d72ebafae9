"""The benchmark's messages, made the same way in both languages (see messages.mjs)."""

from typing import Any


def make(kind: str, count: int) -> list[Any]:
    """KIND: small (a reading), large (30,000 short readings, ~1.2 MB) or readings:N (N of them)."""
    if kind.startswith("readings:"):
        n = int(kind.split(":", 1)[1])
        return [
            {"batch": i, "readings": [{"seq": j, "celsius": -5 + (j * 7.3) % 20} for j in range(n)]}
            for i in range(count)
        ]
    if kind == "small":
        return [
            {
                "sensor": f"s{i % 8}",
                "seq": i,
                "t": 1732470000.0 + i * 0.25,
                "celsius": round(-5 + (i * 7.3) % 20, 2),
            }
            for i in range(count)
        ]
    # large: ~1 MB objects of readings
    return [
        {"batch": i, "readings": [{"seq": j, "celsius": -5 + (j * 7.3) % 20} for j in range(30_000)]}
        for i in range(count)
    ]
