"""What the reader, the history reader and the sample data share (Qt-free, no torch import).

`commands` (the npe2 reader and samples) and `history` (training histories) both import from
here, and neither imports the other at module level: the shared pieces used to live in
`commands`, which made ``commands <-> history`` an import cycle.

- `preload_torch` / `preload_torch_unless_torch_free`: import torch the one safe way under
  an OpenGL context, and only when loading really needs torch (the samples open without it:
  importing torch and torchvision took 2.9 s of napari's main thread here, torchvision
  1.5-2 s of it: it is imported only where needed).
- `use_chance_store`: chance estimates kept in the kernel cache and the sample history's
  shipped ones, so a warm start or the sample does not draw the null again.
- `warnings_as_notifications`: warnings raised while loading (untrained weights, ...) shown
  as napari notifications as well as on stderr.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = [
    "DEFAULT_VIEW",
    "LayerDataTuple",
    "preload_torch",
    "preload_torch_unless_torch_free",
    "single_path",
    "use_chance_store",
    "warnings_as_notifications",
]

#: Kernel view of layers opened by the reader and the sample data.
DEFAULT_VIEW = "colour"

LayerDataTuple = tuple[Any, dict[str, Any], str]


def single_path(path: str | os.PathLike[str] | list[Any]) -> str | None:
    """The one path napari was asked to open, or None for several."""
    if isinstance(path, list | tuple):
        if len(path) != 1:
            return None
        path = path[0]
    return os.fspath(path)


def preload_torch(torchvision: bool = True) -> None:
    """Import torch and torchvision so that they survive an OpenGL context already in place.

    torchvision imports ``torch._dynamo``, which imports ``triton``. ``libtriton.so`` bundles
    its own LLVM; once napari has made its OpenGL context, Mesa (llvmpipe, radeonsi) has loaded
    the system ``libLLVM`` into the process, and ``import triton`` then resolves LLVM symbols
    to Mesa's copy and crashes the process with a segmentation fault (seen under Xvfb with
    torch 2.15 / triton: importing triton *before* the viewer works, after it crashes).
    Loading triton with ``RTLD_DEEPBIND`` makes it use its own LLVM. Linux only; a no-op
    elsewhere, when triton is not installed, or once it is imported.

    Parameters
    ----------
    torchvision : bool
        Import torchvision too. False imports triton (the part that must come first, 0.16 s
        here) and torch only: torchvision (1.5-2 s) is then imported safely whenever
        something needs it.
    """
    import importlib.util
    import sys

    deepbind = getattr(os, "RTLD_DEEPBIND", 0)
    if deepbind and "triton" not in sys.modules and importlib.util.find_spec("triton"):
        flags = sys.getdlopenflags()
        sys.setdlopenflags(flags | deepbind)
        try:
            import triton  # noqa: F401
        except Exception:  # a broken triton: torch copes without it
            pass
        finally:
            sys.setdlopenflags(flags)
    import torch  # noqa: F401

    if torchvision:
        import torchvision as _  # noqa: F401


def preload_torch_unless_torch_free(sources: Iterable[str | os.PathLike[str]]) -> None:
    """`preload_torch`, unless every source loads without torch (`loads_without_torch`).

    The sample data (LeNet5's shipped weights, a model layer in the kernel cache) and
    ``.npy``/``.npz`` files then open without importing torch on napari's main thread.
    """
    from ..sources.loading import loads_without_torch

    if not all(loads_without_torch(source) for source in sources):
        preload_torch(torchvision=False)


def use_chance_store() -> None:
    """Keep chance estimates in the kernel cache (``chance-v1``), with the shipped ones.

    Installs an `analysis.chance_store.ChanceStore` as `analysis.chance`'s store (again if
    the kernel cache moved) and adds the shipped estimates of the sample history
    (`chance_store.read_shipped`), which `chance.estimate_chance` then finds by the
    digest of the weights: the samples open without drawing a null, cache empty or not.
    """
    from ..analysis import chance, chance_store
    from ..sources.cache import cache_dir

    folder = cache_dir() / "chance-v1"
    store = chance.get_store()
    if isinstance(store, chance_store.ChanceStore) and store.folder == folder:
        return
    store = chance_store.ChanceStore(folder)
    store.preset(chance_store.read_shipped())  # in memory only: they ship
    chance.set_store(store)


@contextlib.contextmanager
def warnings_as_notifications() -> Iterator[None]:
    """Show the plugin's warnings raised inside the block as napari notifications.

    The plugin's warnings are the `UserWarning` s of its own classes (`UntrainedWeightsWarning`)
    or raised from its own modules; others (a library's deprecation, ...) are not shown.
    Every warning is also passed on as usual (stderr, logging, ``pytest.warns``; the
    caller's filters decide). If napari's notification manager already receives warnings
    (its hooks are installed), they are not shown twice. Without napari, warnings pass on
    unchanged.
    """
    with warnings.catch_warnings(record=True) as caught:
        # the plugin's own warnings every time (a second open warns again); others as
        # the caller's filters say
        warnings.filterwarnings("always", category=UserWarning, module=r"napari_kernelspec\.")
        yield
    try:
        from napari.utils.notifications import notification_manager, show_warning
    except ImportError:  # pragma: no cover - napari is a dependency
        show_warning = None
    hooked = show_warning is not None and (
        warnings.showwarning == notification_manager.receive_warning
    )
    for record in caught:
        if show_warning is not None and not hooked and _ours(record):
            show_warning(str(record.message))
        warnings.warn_explicit(record.message, record.category, record.filename, record.lineno)


_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _ours(record: warnings.WarningMessage) -> bool:
    """A `UserWarning` of the plugin's own classes or raised from the plugin's modules."""
    if not issubclass(record.category, UserWarning):
        return False
    if record.category.__module__.split(".")[0] == "napari_kernelspec":
        return True
    return os.path.abspath(record.filename).startswith(_PACKAGE + os.sep)
