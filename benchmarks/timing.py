"""Timing of one short function, robust to this machine's slow spells."""

import time


def milliseconds(function, repeats):
    """Milliseconds per call of `function()`: the best of 5 means over `repeats` calls.

    Warms up first (see `warm_up`).
    """
    warm_up(function, repeats)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeats):
            function()
        best = min(best, (time.perf_counter() - start) / repeats * 1e3)
    return best


def warm_up(function, repeats):
    """Calls `function()` a tenth of `repeats` times (compilation, caches)."""
    for _ in range(max(1, repeats // 10)):
        function()
