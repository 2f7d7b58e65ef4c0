"""The plugin's keyboard shortcuts, registered in napari's action manager.

They appear in napari's Preferences > Shortcuts (where users can rebind them) and work
wherever the viewer has the keyboard, not only while a widget has focus. Each acts on the
viewer's `Session`, so the main widget (and the widgets linked through the session) follow.
The default keys clash with no napari default (a test checks napari's shortcuts and its
menus' key bindings): napari binds ``[`` / ``]`` (label brush size) and most single letters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .session import session_for

__all__ = ["ACTIONS", "register_actions"]

PREFIX = "napari-kernelspec"

#: name -> (description, default key, what it does to the session)
ACTIONS: dict[str, tuple[str, str, Callable[[Any], Any]]] = {
    "next_filter": ("Kernel spectrum: next filter", "Alt+]", lambda s: s.step_filter(1)),
    "previous_filter": (
        "Kernel spectrum: previous filter",
        "Alt+[",
        lambda s: s.step_filter(-1),
    ),
    "zoom_to_filter": ("Kernel spectrum: zoom to filter", "Alt+Z", lambda s: s.request("zoom")),
    "show_all": ("Kernel spectrum: show the whole mosaic", "Alt+A", lambda s: s.request("fit")),
    "toggle_show": (
        "Kernel spectrum: toggle kernels / spectra",
        "Alt+\\",
        lambda s: s.request("toggle"),
    ),
    "side_by_side": (
        "Kernel spectrum: side by side on / off",
        "Alt+B",
        lambda s: s.request("side_by_side"),
    ),
}

_registered = False


def _command(act: Callable[[Any], Any]) -> Callable[..., None]:
    from napari.viewer import Viewer

    def command(viewer: Viewer) -> None:
        act(session_for(viewer))

    return command


def register_actions() -> list[str]:
    """Register `ACTIONS` with napari's action manager and bind their keys (once).

    Returns
    -------
    list of str
        The action names (``napari-kernelspec:next_filter``, ...).
    """
    global _registered
    from napari.components import ViewerModel
    from napari.utils.action_manager import action_manager

    names = [f"{PREFIX}:{name}" for name in ACTIONS]
    if _registered:
        return names
    for (_name, (description, key, act)), full in zip(ACTIONS.items(), names, strict=True):
        action_manager.register_action(
            name=full,
            command=_command(act),
            description=description,
            keymapprovider=ViewerModel,
        )
        if not action_manager._shortcuts.get(full):  # keep a binding the user changed
            action_manager.bind_shortcut(full, key)
    _registered = True
    return names
