"""Layer data for napari from an `AnalysisResult`: pure numpy, no Qt, no napari import.

Three layers show one analysed layer of a network, all on one world grid:

``"<model> kernels"``
    RGB image: the mosaic of every filter in one of `views.VIEWS` (no cap on the number).
``"<model> spectra"``
    Grey image with a colormap: the mosaic of the display spectra
    (`AnalysisResult.spectrum_images`), DC at the centre of each tile.
``"<model> clusters"``
    Shapes: one rectangle per *clustered* filter, around its tile, edge colour per cluster
    (`palette.cluster_colors`), text label = filter index. Unclustered filters get no
    rectangle (the status bar still reports them as unclustered).

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
from dataclasses import asdict, dataclass
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
    "clusters_layer",
    "describe_filter",
    "describe_position",
    "geometry_for",
    "kernels_layer",
    "layer_data",
    "layer_names",
    "model_label",
    "spectra_layer",
]

#: The three layers, in the order they are added (bottom to top).
ROLES = ("spectra", "kernels", "clusters")

#: Spectrum colormap (napari name).
SPECTRUM_COLORMAP = "magma"

#: Value of the pixels between tiles (black, so tiles stand out on napari's dark canvas).
GAP_FILL = 0.0

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
    """

    n: int
    ncols: int
    tile: int
    gap: int
    kernel_shape: tuple[int, int]

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
        return half - (h / 2 - 0.5) * sy, half - (w / 2 - 0.5) * sx

    def origins(self) -> np.ndarray:
        """(n, 2) world (row, column) of the top-left spectrum pixel of each tile."""
        return tile_origins(self.n, (self.tile, self.tile), self.ncols, self.gap)

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
        y, x = pos[-2] + 0.5, pos[-1] + 0.5  # pixel i spans [i - 0.5, i + 0.5)
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
        )

    def _check(self, index: int) -> None:
        if not 0 <= index < self.n:
            raise IndexError(f"filter index {index} is outside 0..{self.n - 1}")


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


def result_geometry(result: AnalysisResult, ncols: int | None = None) -> MosaicGeometry:
    """`geometry_for` the filters and spectra of `result`."""
    return geometry_for(result.n_filters, result.spectra.shape[-1], result.bank.kernel_size, ncols)


def kernels_layer(
    result: AnalysisResult, view: str = "colour", geometry: MosaicGeometry | None = None
) -> LayerData:
    """The RGB mosaic of every filter in `view`, placed on the spectra's grid.

    Parameters
    ----------
    result : AnalysisResult
    view : str
        One of `views.VIEWS`.
    geometry : MosaicGeometry, optional
        Defaults to `result_geometry(result)`.

    Returns
    -------
    LayerData
        An ``"image"`` with ``rgb=True``, ``scale`` and ``translate``.
    """
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
    geometry = geometry or result_geometry(result)
    data = mosaic(result.view(view), geometry.ncols, geometry.kernel_gap, fill=GAP_FILL)
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


def spectra_layer(result: AnalysisResult, geometry: MosaicGeometry | None = None) -> LayerData:
    """The mosaic of display spectra (per-filter min-max), DC at each tile's centre.

    ``metadata["frequencies"]`` is the cycles/pixel axis of each tile (None for the
    ``"seed"`` method, whose bins have no physical frequency) and ``metadata["method"]``
    the spectrum method.
    """
    geometry = geometry or result_geometry(result)
    data = mosaic(result.spectrum_images(), geometry.ncols, geometry.gap, fill=GAP_FILL)
    meta = _common(result, geometry, "spectra")
    return LayerData(
        data=data,
        kwargs={
            "name": layer_names(model_label(result.bank))["spectra"],
            "colormap": SPECTRUM_COLORMAP,
            "contrast_limits": (0.0, 1.0),
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
    """(M, 4) RGBA edge colour of each clustered filter (labels >= 0), in filter order."""
    labels = np.asarray(labels)
    k = int(labels.max()) + 1 if labels.size and labels.max() >= 0 else 0
    colours = cluster_colors(k)
    clustered = labels[labels >= 0]
    rgba = np.ones((clustered.size, 4))
    rgba[:, :3] = colours[clustered] if clustered.size else np.empty((0, 3))
    return rgba


def clusters_layer(result: AnalysisResult, geometry: MosaicGeometry | None = None) -> LayerData:
    """One rectangle per clustered filter, edge colour per cluster, label = filter index.

    ``features`` has one row per rectangle: ``filter``, ``cluster``, ``colour`` (hex) and
    every descriptor of `descriptors.DESCRIPTOR_NAMES`. Unclustered filters get no rectangle.
    """
    geometry = geometry or result_geometry(result)
    labels = np.asarray(result.labels)
    members = np.flatnonzero(labels >= 0)
    margin = geometry.gap / 2
    rects = [geometry.box(int(i), margin) for i in members]
    rgba = cluster_edge_colors(labels)
    features: dict[str, Any] = {
        "filter": members.astype(int),
        "cluster": labels[members].astype(int),
        "colour": np.array([to_hex(c[:3]) for c in rgba], dtype=object),
    }
    for name in DESCRIPTOR_NAMES:
        features[name] = np.asarray(result.descriptors[name], dtype=float)[members]
    edge_width = float(np.clip(0.6 * geometry.gap, 1.0, geometry.tile / 16))
    meta = _common(result, geometry, "clusters")
    return LayerData(
        data=rects,
        kwargs={
            "name": layer_names(model_label(result.bank))["clusters"],
            "shape_type": "rectangle",
            # napari rejects an empty colour array: any colour will do for zero shapes.
            "edge_color": rgba if len(rgba) else "white",
            "face_color": "transparent",
            "edge_width": edge_width,
            "features": features,
            "text": {
                "string": "{filter}",
                "anchor": "upper_left",
                "size": 9,
                "color": "white",
                "translation": [margin + 1.0, margin + 1.0],
            },
            "metadata": {"kernelspec": meta},
        },
        layer_type="shapes",
    )


def layer_data(
    result: AnalysisResult, view: str = "colour", ncols: int | None = None
) -> list[LayerData]:
    """The three layers of `result`, bottom to top: spectra, kernels, clusters."""
    geometry = result_geometry(result, ncols)
    return [
        spectra_layer(result, geometry),
        kernels_layer(result, view, geometry),
        clusters_layer(result, geometry),
    ]


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
