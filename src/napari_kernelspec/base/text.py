"""Text that crosses a trust boundary: names from files and state dicts, shown to people.

Two rules, applied wherever the product writes such text:

- :func:`printable` for terminals and one-line messages: control characters (newlines, ANSI
  escape codes, ...) are shown escaped, so a crafted name can neither forge a second line nor
  drive the terminal.
- :func:`csv_cell` for every CSV the product writes: a cell that a spreadsheet would read as a
  formula gets a leading apostrophe (OWASP's rule for CSV injection).

And one rule for numbers shown to people (:func:`number`, :func:`percent`): a value that is
undefined (NaN, None; for example a descriptor that a 1x1 kernel cannot define) reads ``n/a``.
"""

from __future__ import annotations

import math
import unicodedata

__all__ = ["CSV_FORMULA_PREFIXES", "NOT_AVAILABLE", "csv_cell", "number", "percent", "printable"]

#: How an undefined value reads in tables and summaries.
NOT_AVAILABLE = "n/a"

#: First characters that make a spreadsheet evaluate a cell (OWASP, CSV injection).
CSV_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def printable(text: object, limit: int | None = None) -> str:
    """``text`` as one safe line: control and format characters shown as escapes.

    Parameters
    ----------
    text : object
        Anything; it is converted with ``str`` first.
    limit : int, optional
        Longest result in characters; longer text is cut and ends with an ellipsis.

    Returns
    -------
    str
        The text, with every character of Unicode category C* (control, format, surrogate,
        private use, unassigned) replaced by its ``\\xNN`` / ``\\uNNNN`` escape.

    Examples
    --------
    >>> printable("conv1\\n\\x1b[2J")
    'conv1\\\\n\\\\x1b[2J'
    """
    out = []
    for ch in str(text):
        if unicodedata.category(ch)[0] == "C":
            out.append(ch.encode("unicode_escape").decode("ascii"))
        else:
            out.append(ch)
    result = "".join(out)
    if limit is not None and len(result) > limit:
        result = result[: max(limit - 1, 0)] + "…"
    return result


def csv_cell(value: object) -> object:
    """A CSV cell that no spreadsheet evaluates: formula-like strings get a leading ``'``.

    Numbers (int, float, bool, None) pass through unchanged, so a negative number stays a
    number; only strings starting with one of :data:`CSV_FORMULA_PREFIXES` are changed.
    """
    if isinstance(value, str) and value.startswith(CSV_FORMULA_PREFIXES):
        return "'" + value
    return value


def _defined(value: object) -> float | None:
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def number(value: object, digits: int = 3) -> str:
    """``value`` with `digits` decimals, or ``"n/a"`` when it is None, NaN or infinite.

    >>> number(0.9777777777777777), number(float("nan")), number(None, 1)
    ('0.978', 'n/a', 'n/a')
    """
    x = _defined(value)
    return NOT_AVAILABLE if x is None else f"{x:.{digits}f}"


def percent(value: object, digits: int = 0) -> str:
    """A fraction as a percentage (``0.4 -> "40%"``), or ``"n/a"`` when undefined."""
    x = _defined(value)
    return NOT_AVAILABLE if x is None else f"{100 * x:.{digits}f}%"
