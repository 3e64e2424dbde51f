"""Suggestions for a mistyped name: the "did you mean" of unknown fields and flags."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["closest", "did_you_mean"]


def closest(name: str, choices: Iterable[str]) -> str | None:
    """The choice `name` most likely meant, or None when none is close.

    A difference of case only (`concurrencypolicy`) wins outright; otherwise the closest
    spelling (`startingDeadline` → `startingDeadlineSeconds`, `shedules` → `schedules`) when
    it is similar enough to be a typo rather than another word.
    """
    options = list(dict.fromkeys(choices))
    folded = name.casefold().replace("_", "").replace("-", "")
    for option in options:
        if option.casefold().replace("_", "").replace("-", "") == folded:
            return option
    prefixed = [option for option in options if option.casefold().startswith(name.casefold())]
    if len(name) >= 4 and len(prefixed) == 1:
        return prefixed[0]
    by_folded = {option.casefold(): option for option in options}
    matches = difflib.get_close_matches(name.casefold(), list(by_folded), n=1, cutoff=0.75)
    return by_folded[matches[0]] if matches else None


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """` (did you mean "x"?)` to append to a message, or "" when nothing is close."""
    match = closest(name, choices)
    return f' (did you mean "{match}"?)' if match is not None else ""
