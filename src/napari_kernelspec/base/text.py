"""Text that crosses a trust boundary: names from files and state dicts, shown to people.

Two rules, applied wherever the product writes such text:

- :func:`printable` for terminals and one-line messages: control characters (newlines, ANSI
  escape codes, ...) are shown escaped, so a crafted name can neither forge a second line nor
  drive the terminal.
- :func:`csv_cell` for every CSV the product writes: a cell that a spreadsheet would read as a
  formula gets a leading apostrophe (OWASP's rule for CSV injection).

And :func:`redact` for every URL that is shown or stored (messages, JSON, reports, tables):
credentials in it (``user:password@``, query parameters such as ``token`` or
``X-Amz-Signature``) read ``***``.

And one rule for numbers shown to people (:func:`number`, :func:`percent`): a value that is
undefined (NaN, None; for example a descriptor that a 1x1 kernel cannot define) reads ``n/a``.
"""

from __future__ import annotations

import math
import re
import unicodedata

__all__ = [
    "CSV_FORMULA_PREFIXES",
    "NOT_AVAILABLE",
    "SECRET_PARAMETERS",
    "csv_cell",
    "number",
    "percent",
    "printable",
    "redact",
]

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


#: Query parameters whose values are credentials (compared in lower case); every
#: ``X-Amz-*``, ``X-Goog-*`` and ``*token*`` / ``*secret*`` / ``*signature*`` parameter too.
SECRET_PARAMETERS = frozenset(
    {
        "token",
        "access_token",
        "auth",
        "key",
        "api_key",
        "apikey",
        "sig",
        "signature",
        "password",
        "pass",
        "pwd",
        "secret",
        "credential",
        "se",  # Azure SAS: its expiry travels with its signature
        "sv",
        "sp",
    }
)
_SECRET_PATTERNS = ("token", "secret", "signature", "password", "credential")
_URL = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^\s\"'<>]*)")
_USERINFO = re.compile(r"^([^/?#@]*)@")
_PARAM = re.compile(r"([?&;])([^=&;#\s]+)=([^&;#\s]*)")


def _secret(name: str) -> bool:
    low = name.lower()
    return (
        low in SECRET_PARAMETERS
        or low.startswith(("x-amz-", "x-goog-"))
        or any(p in low for p in _SECRET_PATTERNS)
    )


def _redact_one(match: re.Match[str]) -> str:
    scheme, rest = match.group(1), match.group(2)
    rest = _USERINFO.sub("***@", rest, count=1)
    rest = _PARAM.sub(
        lambda m: f"{m.group(1)}{m.group(2)}=***" if _secret(m.group(2)) else m.group(0), rest
    )
    return scheme + rest


def redact(text: object) -> str:
    """``text`` with the credentials of every URL in it shown as ``***``.

    The ``user:password@`` part becomes ``***@``; the values of query parameters that carry
    credentials (:data:`SECRET_PARAMETERS`, ``X-Amz-*``, ``X-Goog-*``, names containing
    ``token``, ``secret``, ``signature``, ``password``, ``credential``) become ``***``.

    >>> redact("cannot read http://me:pw@host/w.pth?token=abc&v=2: not found")
    'cannot read http://***@host/w.pth?token=***&v=2: not found'
    """
    text = str(text)
    if "://" not in text:
        return text
    return _URL.sub(_redact_one, text)
