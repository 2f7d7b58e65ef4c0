"""`explain`: one call for every method, and the files it writes (npz, PNG mosaic).

>>> res = explain("vgg16", "features.2", "0-3", "maximize", steps=64)   # doctest: +SKIP
>>> res.images.shape, res.meta["caveats"]                                # doctest: +SKIP
((4, 128, 128, 3), ['UNTRAINED: ...'])
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...analysis.views import mosaic, tile_origins
from ...base.atomic import atomic_write, write_together
from ...base.errors import KernelSpecError
from ...base.limits import check_elements
from .attribution import METHODS, iter_attribute
from .maximize import iter_maximize
from .model import ExplainModel, drive

__all__ = [
    "Explanation",
    "attribution_rgb",
    "check_output_paths",
    "diverging",
    "explain",
    "iter_explain",
    "npz_bytes",
    "png_bytes",
    "read_image",
    "save_files",
    "save_npz",
    "save_png",
]

#: Ends of the diverging colormap (negative, zero, positive), RGB in [0, 1].
DIVERGING = np.array([[0.23, 0.30, 0.75], [0.97, 0.97, 0.97], [0.71, 0.02, 0.15]])


@dataclass
class Explanation:
    """The result of one `explain` call.

    Attributes
    ----------
    method : str
    layer : str
    filters : list of int
    images : (F, H, W, C) ndarray of float32 in [0, 1], or None
        Maximising images (``method="maximize"``).
    attributions : (F, C, H, W) ndarray of float32, or None
        Per-pixel attributions (the other methods), in the model input's pixel grid.
    image : (C, H, W) ndarray of float32, or None
        The model input the attributions are about.
    meta : dict
        JSON-safe: model, layer, method, filters, parameters, weights source, caveats.
    masks : (K, H, W) ndarray of bool, or None
        Segmentations (GrabCut).
    labels : list of str, or None
        Tile captions of the PNG (default the filter indices).
    arrays : dict of str to ndarray
        More arrays written to the npz (an adversarial example's ``original`` and
        ``perturbation``).
    tiles : (T, H, W, 3) ndarray, or None
        What the PNG shows, when it is not the images / attributions themselves.
    """

    method: str
    layer: str
    filters: list[int]
    images: np.ndarray | None
    attributions: np.ndarray | None
    image: np.ndarray | None
    meta: dict[str, Any]
    masks: np.ndarray | None = None
    labels: list[str] | None = None
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    tiles: np.ndarray | None = None


def iter_explain(
    model: ExplainModel,
    layer: str | None,
    filters: Any,
    method: str = "maximize",
    *,
    image: Any = None,
    **options: Any,
) -> Generator[tuple[int, int], None, Explanation]:
    """`explain` as a generator: yields ``(done, total)`` and returns the `Explanation`.

    Front ends drive it from a worker thread (``yield from``) to show progress and to stop
    between steps.
    """
    if method not in METHODS:
        raise KernelSpecError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    name = model.resolve_layer(layer)
    chosen = model.check_filters(name, filters)
    if method == "maximize":
        size = int(options.get("size") or 0)
        check_elements((len(chosen), size, size, 3), f"{len(chosen)} maximising images")
        res = yield from iter_maximize(model, name, chosen, **options)
        caveats: list[str] = []
    else:
        if image is None:
            raise KernelSpecError(f"--method {method} explains a filter on an image: give --image")
        shape = np.shape(image)
        check_elements((len(chosen), 3, *shape[:2]), f"the attributions of {len(chosen)} filters")
        res = yield from iter_attribute(model, name, chosen, image, method, **options)
        caveats = res["caveats"]
    meta = {
        **model.describe(),
        "layer": name,
        "method": method,
        "filters": chosen,
        "at": res["at"],
        "parameters": res["parameters"],
        "caveats": model.caveats + caveats,
    }
    if method == "maximize":
        meta["objective"] = [float(v) for v in res["objective"]]
    else:
        meta["activations"] = res["activations"]
    return Explanation(
        method=method,
        layer=name,
        filters=chosen,
        images=res.get("images"),
        attributions=res.get("attributions"),
        image=res.get("image"),
        meta=meta,
    )


def explain(
    model: ExplainModel,
    layer: str | None,
    filters: Any,
    method: str = "maximize",
    *,
    image: Any = None,
    progress: Callable[[int, int], None] | None = None,
    **options: Any,
) -> Explanation:
    """Explain filters of one layer with one method.

    Parameters
    ----------
    model : ExplainModel
    layer : str or None
        A convolution name, ``"first"`` (None), ``"middle"`` or ``"last"``.
    filters : str or sequence of int
        ``"0,3,5-9"`` or indices.
    method : {"maximize", "deconvnet", "guided", "gradient", "occlusion"}
    image : (H, W[, C]) array_like
        Needed by every method but ``maximize``.
    progress : callable, optional
        Called with ``(done, total)`` (steps for ``maximize``, filters otherwise).
    **options
        Passed on to `maximize` (size, steps, seed, at, ...) or `attribute` (at, window,
        window_stride, ...).

    Raises
    ------
    KernelSpecError
        Unknown method, missing image, bad layer or filter.
    """
    return drive(iter_explain(model, layer, filters, method, image=image, **options), progress)


# --- files ---------------------------------------------------------------------------------


def read_image(path: str | os.PathLike[str], max_side: int = 4096) -> np.ndarray:
    """An image file as (H, W) or (H, W, 3) uint8, read with Pillow.

    Raises
    ------
    KernelSpecError
        Missing or unreadable file, or larger than `max_side` on a side (checked before the
        pixels are decoded).
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path).expanduser()
    if not path.is_file():
        raise KernelSpecError(f"no such image: {path}; give a PNG, JPEG or TIFF file")
    try:
        with Image.open(path) as img:
            if max(img.size) > max_side:
                raise KernelSpecError(
                    f"{path.name} is {img.size[0]}x{img.size[1]} pixels; resize it to at most "
                    f"{max_side} on a side"
                )
            img = img.convert("L" if img.mode in ("1", "L", "I", "I;16", "F") else "RGB")
            return np.asarray(img).copy()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise KernelSpecError(
            f"cannot read {path.name} as an image ({str(exc).splitlines()[0][:100]}); "
            "give a PNG, JPEG or TIFF file"
        ) from None


def npz_bytes(result: Explanation) -> bytes:
    """`result` as the bytes of an .npz: ``images`` or ``attributions``, ``filters``, ``meta``
    (JSON), ``masks`` and the result's extra arrays.

    For attributions the model input is stored as ``image`` (C, H, W) too.
    """
    import io

    arrays: dict[str, np.ndarray] = {
        "filters": np.asarray(result.filters, dtype=np.int64),
        "meta": np.array(json.dumps(result.meta, allow_nan=False)),
    }
    if result.images is not None:
        arrays["images"] = np.asarray(result.images, dtype=np.float32)
    if result.attributions is not None:
        arrays["attributions"] = np.asarray(result.attributions, dtype=np.float32)
    if result.image is not None:
        arrays["image"] = np.asarray(result.image, dtype=np.float32)
    if result.masks is not None:
        arrays["masks"] = np.asarray(result.masks, dtype=bool)
    for key, value in result.arrays.items():
        arrays[key] = np.asarray(value)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def save_npz(result: Explanation, path: str | os.PathLike[str]) -> Path:
    """Write `result` atomically as an .npz (see `npz_bytes`)."""
    return _write(path, npz_bytes(result))


def _write(path: str | os.PathLike[str], data: bytes) -> Path:
    path = Path(path)
    try:
        with atomic_write(path, "wb") as fh:
            fh.write(data)
    except OSError as exc:
        raise KernelSpecError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def check_output_paths(*paths: str | os.PathLike[str] | None) -> None:
    """Refuse, before any work, output paths that are folders or lie below a file.

    Raises
    ------
    KernelSpecError
        Naming the first such path; ``None`` entries are skipped.
    """
    for path in paths:
        if path is None:
            continue
        path = Path(path)
        if path.is_dir():
            raise KernelSpecError(f"{path} is a folder; give a file name to write")
        parent = next((p for p in path.parents if p.exists()), None)
        if parent is not None and not parent.is_dir():
            raise KernelSpecError(f"cannot write {path}: {parent} is a file, not a folder")


def save_files(
    result: Explanation,
    npz: str | os.PathLike[str],
    png: str | os.PathLike[str] | None = None,
) -> tuple[Path, Path | None]:
    """Write the .npz and, if `png` is given, the PNG mosaic, both or neither.

    Both files are made in memory first and then replaced together (`write_together`), so a
    PNG path that cannot be written leaves no new .npz behind.
    """
    check_output_paths(npz, png)
    contents: list[tuple[Path, bytes]] = [(Path(npz), npz_bytes(result))]
    if png is not None:
        contents.append((Path(png), png_bytes(result)))
    try:
        write_together(contents)
    except OSError as exc:
        where = exc.filename or npz
        raise KernelSpecError(f"cannot write {where}: {exc.strerror or exc}") from None
    return contents[0][0], (contents[1][0] if png is not None else None)


def diverging(values: np.ndarray, limit: float | None = None) -> np.ndarray:
    """Blue - white - red colours for signed values, white at 0.

    Parameters
    ----------
    values : (...) ndarray
    limit : float, optional
        The value shown fully red (and -limit fully blue); default the largest |value|.

    Returns
    -------
    (..., 3) ndarray of float32 in [0, 1]
    """
    values = np.asarray(values, dtype=np.float64)
    limit = float(np.abs(values).max()) if limit is None else float(limit)
    t = np.clip(values / limit, -1, 1) if limit > 0 else np.zeros_like(values)
    lo, mid, hi = DIVERGING
    neg = mid + (lo - mid) * (-np.minimum(t, 0))[..., None]
    pos = mid + (hi - mid) * np.maximum(t, 0)[..., None]
    return np.where((t < 0)[..., None], neg, pos).astype(np.float32)


def attribution_rgb(attributions: np.ndarray) -> np.ndarray:
    """(F, C, H, W) attributions -> (F, H, W, 3) colours: channel sum, one scale per filter."""
    summed = np.asarray(attributions, dtype=np.float64).sum(axis=1)
    return np.stack([diverging(a) for a in summed])


def tiles(result: Explanation) -> np.ndarray:
    """(F, H, W, 3) float32 tiles of a result: the images, or the attributions' colours."""
    if result.tiles is not None:
        return np.asarray(result.tiles, dtype=np.float32)
    if result.images is not None:
        imgs = np.asarray(result.images, dtype=np.float32)
        return np.repeat(imgs, 3, axis=-1) if imgs.shape[-1] == 1 else imgs
    assert result.attributions is not None
    return attribution_rgb(result.attributions)


def png_bytes(result: Explanation, min_tile: int = 64) -> bytes:
    """The bytes of a PNG mosaic of the result, one tile per filter labelled with its index.

    A two-line caption names the model, layer and method, and says UNTRAINED (in red) for
    random weights.

    Tiles smaller than `min_tile` pixels are enlarged (nearest neighbour).
    """
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    meta = result.meta
    title = f"{meta.get('name', '')} {result.layer}: {result.method}"
    trained = meta.get("trained", True)
    second = f"weights: {meta.get('weights', '')}" if trained else "UNTRAINED: random weights"
    # The caption sets the width when it is wider than the mosaic: never cut off.
    caption_w = 8 + int(max(font.getlength(title), font.getlength(second)))
    stack = tiles(result)
    h = stack.shape[1]
    zoom = max(1, -(-min_tile // h))
    if zoom > 1:
        stack = stack.repeat(zoom, axis=1).repeat(zoom, axis=2)
    tile_h, tile_w = stack.shape[1:3]
    label = 12
    framed = np.ones((len(stack), tile_h + label, tile_w, 3), np.float32)
    framed[:, label:] = stack
    body = (mosaic(framed, gap=2, fill=1.0) * 255).round().astype(np.uint8)
    header = 2 * label  # caption: model, layer, method; UNTRAINED in red when it is
    width = max(body.shape[1], 320, caption_w)
    pixels = np.full((body.shape[0] + header, width, 3), 255, np.uint8)
    pixels[header:, : body.shape[1]] = body
    img = Image.fromarray(pixels)
    draw = ImageDraw.Draw(img)
    draw.text((1, 0), title, fill=(0, 0, 0), font=font)
    draw.text((1, label), second, fill=(0, 0, 0) if trained else (200, 0, 0), font=font)
    origins = tile_origins(len(stack), (tile_h + label, tile_w), gap=2)
    captions = result.labels if result.labels is not None else result.filters
    for (row, col), f in zip(origins, captions, strict=True):
        draw.text((int(col) + 1, int(row) + header), str(f), fill=(0, 0, 0), font=font)
    import io

    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


def save_png(result: Explanation, path: str | os.PathLike[str], min_tile: int = 64) -> Path:
    """Write the PNG mosaic of `result` (see `png_bytes`) atomically."""
    return _write(path, png_bytes(result, min_tile))
