"""Small formatting helpers shared by the CLI and the app."""

from __future__ import annotations

import math


def format_duration(seconds: float) -> str:
    """45s, 3m 05s, 2h 07m; '?' when unknown."""
    if seconds != seconds or math.isinf(seconds):
        return "?"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds}s"


def counted(count: float, noun: str) -> str:
    """'1 epoch', '3 epochs', '2.5 minutes': the noun agrees with the number."""
    return f"{count:g} {noun}{'' if count == 1 else 's'}"


def format_loss(loss: float) -> str:
    """4 decimals, and for a loss under 0.001 its exponent: "0.0000" hid a loss of 3e-6 that sat
    near zero for a whole run, which is worth seeing."""
    return f"{loss:.1e}" if 0 < abs(loss) < 1e-3 else f"{loss:.4f}"
