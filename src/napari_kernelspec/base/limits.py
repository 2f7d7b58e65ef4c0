"""Limits that keep hostile or mistaken input from exhausting time, memory or disk.

Each limit has a default and an environment variable that changes it (read at each use, so
a test or a long-running napari session can change it). The README's "Limits" section lists
them all.

=================================  ==========  ==============================================
Variable                           Default     What it bounds
=================================  ==========  ==============================================
``KERNELSPEC_HTTP_DEADLINE``       120 s       all Range requests for one remote source
``KERNELSPEC_HTTP_TIMEOUT``        30 s        silence (connect, next bytes); a full download
                                               stalls when less than 64 KiB arrive in it
``KERNELSPEC_MAX_DOWNLOAD``        2 GiB       a full download (server without Range support)
``KERNELSPEC_MAX_OUTPUT_ELEMENTS`` 2**28       values in one output (feature maps, patches,
                                               images decoded for them): 1 GiB as float32
``KERNELSPEC_MAX_LIST_BYTES``      64 MiB      a ``scan @list.txt`` file
=================================  ==========  ==============================================

Byte sizes take an optional ``K``, ``M`` or ``G`` suffix (powers of 1024): ``512M``.
"""

from __future__ import annotations

import os

from .errors import KernelSpecError

__all__ = [
    "check_elements",
    "http_deadline",
    "http_timeout",
    "max_download",
    "max_list_bytes",
    "max_output_elements",
    "size_text",
]

_SUFFIX = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def _env(name: str, default: float, *, sizes: bool = False) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    text = raw.upper().removesuffix("B").removesuffix("I") if sizes else raw
    unit = 1
    if sizes and text and text[-1] in _SUFFIX:
        unit, text = _SUFFIX[text[-1]], text[:-1]
    try:
        value = float(text) * unit
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise KernelSpecError(f"{name} is {raw!r}; give a positive number")
    return value


def http_timeout() -> float:
    """Seconds of silence before a request fails (``KERNELSPEC_HTTP_TIMEOUT``, default 30)."""
    try:
        return max(0.1, float(os.environ.get("KERNELSPEC_HTTP_TIMEOUT", "30")))
    except ValueError:
        return 30.0


def http_deadline() -> float:
    """Seconds all Range requests for one source may take (``KERNELSPEC_HTTP_DEADLINE``)."""
    return _env("KERNELSPEC_HTTP_DEADLINE", 120.0)


def max_download() -> int:
    """Most bytes of one full download (``KERNELSPEC_MAX_DOWNLOAD``, default 2 GiB)."""
    return int(_env("KERNELSPEC_MAX_DOWNLOAD", 2.0 * 2**30, sizes=True))


def max_list_bytes() -> int:
    """Largest ``@list`` file a scan reads (``KERNELSPEC_MAX_LIST_BYTES``, default 64 MiB)."""
    return int(_env("KERNELSPEC_MAX_LIST_BYTES", 64.0 * 2**20, sizes=True))


def max_output_elements() -> int:
    """Most values in one output array (``KERNELSPEC_MAX_OUTPUT_ELEMENTS``, default 2**28)."""
    return int(_env("KERNELSPEC_MAX_OUTPUT_ELEMENTS", float(2**28)))


def size_text(nbytes: float) -> str:
    """``1.5 GiB``-style text for a byte count."""
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.3g} {unit}"
    return f"{int(nbytes)} bytes"


def check_elements(shape: tuple[int, ...] | list[int], what: str) -> None:
    """Refuse an output of `shape` before it is allocated when it exceeds the element limit.

    Parameters
    ----------
    shape : sequence of int
        The output's shape (Python ints: no overflow however large).
    what : str
        What the output is, for the message (``"the feature maps"``).

    Raises
    ------
    KernelSpecError
        One line naming the size, the limit and ``KERNELSPEC_MAX_OUTPUT_ELEMENTS``.
    """
    total = 1
    for n in shape:
        total *= max(int(n), 0)
    limit = max_output_elements()
    if total > limit:
        dims = " x ".join(str(int(n)) for n in shape)
        raise KernelSpecError(
            f"{what} would hold {total:,} values ({dims}; {size_text(4 * total)} as float32), "
            f"more than the limit of {limit:,} (KERNELSPEC_MAX_OUTPUT_ELEMENTS); use a "
            "smaller image or fewer filters, or raise the limit"
        )
