"""What a client sends, bounded before it is used.

Numbers: ``int()`` refuses more than 4,300 digits (a ValueError deep in a handler, so
a 500) and spends quadratic time below that, so a number is measured by its length
first. No size, offset or count this service handles needs more than
:data:`MAX_DIGITS` digits (a signed 64-bit integer, what every backend records).
"""

from __future__ import annotations

# 9,223,372,036,854,775,807 (2**63 - 1) has 19 digits.
MAX_DIGITS = 19


def whole_number(text: str, max_digits: int = MAX_DIGITS) -> int | None:
    """``text`` as a non-negative decimal number, or None if it is not one or has
    more than ``max_digits`` digits (leading zeros count: no client needs them).

    ASCII digits only: ``str.isdigit`` also accepts "²" and other digits ``int()``
    refuses or reads differently.
    """
    if not text or len(text) > max_digits or not (text.isascii() and text.isdigit()):
        return None
    return int(text)
