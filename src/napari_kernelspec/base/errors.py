"""The one exception type for mistakes a user can fix."""

from __future__ import annotations

__all__ = ["KernelSpecError"]


class KernelSpecError(ValueError):
    """Bad input from the user: a one-line message that says what went wrong and what to do.

    The CLI prints it as ``kernelspec: error: <message>`` with exit status 2 and no traceback;
    the napari widget shows it as a notification.
    """
