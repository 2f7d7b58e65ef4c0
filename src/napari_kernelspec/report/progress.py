"""A tiny progress bar on stderr (no tqdm): one step per model."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    """Count steps and draw ``label [#####-----] 3/8 name (1.2 s)`` on a stream.

    On a terminal the line is redrawn in place; otherwise (logs, CI) each step gets its
    own line. Disabled instances print nothing.

    Parameters
    ----------
    total : int
        Number of steps.
    label : str
        Text in front of the bar.
    enabled : bool
        Print anything at all.
    stream : text stream, optional
        Where to draw; default ``sys.stderr`` (looked up when drawing).
    width : int
        Characters of the bar itself.
    """

    def __init__(
        self,
        total: int,
        label: str = "report",
        *,
        enabled: bool = True,
        stream: TextIO | None = None,
        width: int = 24,
    ) -> None:
        if total < 0:
            raise ValueError(f"total must be >= 0, got {total}")
        self.total, self.label, self.enabled, self.width = total, label, enabled, width
        self._stream = stream
        self.done = 0
        self._start = time.perf_counter()
        self._drawn = False

    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stderr

    def _line(self, note: str) -> str:
        filled = round(self.width * self.done / self.total) if self.total else self.width
        bar = "#" * filled + "-" * (self.width - filled)
        elapsed = time.perf_counter() - self._start
        return f"{self.label} [{bar}] {self.done}/{self.total} {note} ({elapsed:.1f} s)".rstrip()

    def _draw(self, note: str) -> None:
        if not self.enabled:
            return
        stream = self.stream
        tty = getattr(stream, "isatty", lambda: False)()
        line = self._line(note)
        if tty:
            stream.write("\r\x1b[2K" + line)
        else:
            stream.write(line + "\n")
        stream.flush()
        self._drawn = True

    def start(self, note: str = "") -> None:
        """Show the bar before the first step (e.g. the name of the model being loaded)."""
        if getattr(self.stream, "isatty", lambda: False)():
            self._draw(note)

    def step(self, note: str = "") -> None:
        """One step finished; `note` says which."""
        self.done = min(self.total, self.done + 1)
        self._draw(note)

    def close(self, note: str = "") -> None:
        """Finish the line on a terminal (a no-op for logs)."""
        if self.enabled and self._drawn and getattr(self.stream, "isatty", lambda: False)():
            self.stream.write(("\r\x1b[2K" + self._line(note) if note else "") + "\n")
            self.stream.flush()
