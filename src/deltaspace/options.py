"""`--set key=value` options shared by the commands that build delta methods."""

from __future__ import annotations


def parse_sets(pairs: list[str] | None) -> dict[str, str]:
    options = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects key=value, got {pair!r}")
        options[key.strip()] = value.strip()
    return options


def record_value(text) -> int | float | str:
    """A ``--record key=value`` value as a result row holds it: ints and floats become numbers."""
    text = str(text)
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


# argparse `type=` checks: a bad number is an argparse usage error ("argument --lr: must be > 0,
# got -1.0") before any work starts, not a traceback from deep inside the run.
def _number(kind, minimum, strict: bool, what: str):
    import argparse

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value != value or (value <= minimum if strict else value < minimum):  # NaN fails too
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {minimum:g}, got {text}")
        return value

    parse.__name__ = what  # argparse names the type in its own messages
    return parse


positive_int = _number(int, 0, True, "a positive integer")
non_negative_int = _number(int, 0, False, "an integer >= 0")
positive_float = _number(float, 0.0, True, "a positive number")
non_negative_float = _number(float, 0.0, False, "a number >= 0")
