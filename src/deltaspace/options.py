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
