"""The function every way of the calls benchmark calls (python -m bothways.host add, pythonia)."""


def add(a: int, b: int) -> int:
    return a + b
