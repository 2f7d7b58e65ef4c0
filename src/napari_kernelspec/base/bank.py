"""`KernelBank`: the weights of one convolutional layer plus where they came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import KernelSpecError

__all__ = ["SOURCES", "KernelBank", "as_stack", "validate_weights"]

#: Where a bank's numbers came from. ``random`` means *untrained*: never present it as trained.
SOURCES = ("pretrained", "random", "trained-digits", "checkpoint", "array")


def _pair(value: int | tuple[int, int] | list[int], name: str) -> tuple[int, int]:
    if isinstance(value, int | np.integer):
        pair = (int(value), int(value))
    else:
        items = tuple(int(v) for v in value)
        if len(items) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        pair = items
    if name == "stride" and min(pair) < 1:
        raise ValueError(f"stride must be >= 1, got {pair}")
    if name == "dilation" and min(pair) < 1:
        raise ValueError(f"dilation must be >= 1, got {pair}")
    if name == "padding" and min(pair) < 0:
        raise ValueError(f"padding must be >= 0, got {pair}")
    return pair  # type: ignore[return-value]


def as_stack(weights: Any) -> np.ndarray:
    """A non-empty (N, C, H, W) float64 array for computing on, or a ValueError.

    The light check of the core's functions; `validate_weights` is the full one that a
    `KernelBank` applies to what a user loads.
    """
    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim != 4 or 0 in weights.shape:
        raise ValueError(f"weights must be a non-empty (N, C, H, W) array, got {weights.shape}")
    return weights


def validate_weights(weights: Any, what: str = "weights") -> np.ndarray:
    """Check a layer's weights and return them as a C-contiguous float32 array.

    Parameters
    ----------
    weights : (N, C, H, W) array_like
        Filters of one convolutional layer: N filters over C input channels.
    what : str
        How to name the input in error messages (a file name, a layer name).

    Returns
    -------
    (N, C, H, W) ndarray of float32

    Raises
    ------
    KernelSpecError
        If the array is not 4-D, is empty, holds NaN or Inf, or has an all-zero filter.
    """
    arr = np.asarray(weights)
    if arr.dtype.kind not in "fiu":
        raise KernelSpecError(f"{what} has dtype {arr.dtype}; expected a real numeric array")
    if arr.ndim != 4:
        raise KernelSpecError(
            f"{what} has shape {arr.shape}; expected a 4-D (filters, channels, height, width) "
            "array of convolution weights"
        )
    if 0 in arr.shape:
        raise KernelSpecError(f"{what} is empty (shape {arr.shape}); give a layer with filters")
    largest = float(np.abs(arr).max()) if arr.dtype.kind == "f" else 0.0
    if np.isfinite(largest) and largest > np.finfo(np.float32).max:
        raise KernelSpecError(
            f"{what} has weights beyond the float32 range (largest |w| = {largest:.3g}); "
            "rescale them before analysing"
        )
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        bad = np.flatnonzero(~np.isfinite(arr).reshape(len(arr), -1).all(axis=1))
        raise KernelSpecError(
            f"{what} has NaN or Inf weights in filter(s) {_short_list(bad)}; "
            "the checkpoint is damaged or training diverged: use another checkpoint"
        )
    zero = np.flatnonzero(~arr.reshape(len(arr), -1).any(axis=1))
    if zero.size:
        raise KernelSpecError(
            f"{what} has all-zero filter(s) {_short_list(zero)}, which have no spectrum or "
            "direction; drop them (or pick another layer) before analysing"
        )
    return arr


def _short_list(idx: np.ndarray, most: int = 8) -> str:
    items = ", ".join(str(int(i)) for i in idx[:most])
    return f"[{items}{', ...' if idx.size > most else ''}]"


@dataclass(frozen=True, eq=False)
class KernelBank:
    """The filters of one convolutional layer and their provenance.

    Parameters
    ----------
    weights : (N, C, H, W) ndarray of float32
        N filters over C input channels; validated on construction.
    model : str
        Canonical model name (``"alexnet"``) or, for files, the file name.
    layer : str
        Module name or state-dict key of the layer (``"features.0"``).
    source : str
        One of `SOURCES`. ``"random"`` marks untrained weights.
    stride, padding, dilation : int or (int, int)
        The layer's stride, zero padding and dilation (row, column). Unknown for bare files:
        stride 1, padding 0 and dilation 1 are assumed and ``provenance["stride_known"]`` is
        False.
    bias : (N,) ndarray of float32, optional
        The layer's bias, or None when it has none (or the file does not hold it).
    groups : int
        The convolution's groups: the layer maps ``C * groups`` input channels to N filters,
        each filter seeing C of them.
    display_name : str, optional
        Human-readable name (``"AlexNet"``); defaults to `model`.
    provenance : dict, optional
        JSON-serialisable facts for reports: weights enum name, URL, file path, training
        accuracy, random seed, package versions.
    """

    weights: np.ndarray
    model: str
    layer: str
    source: str
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    display_name: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)
    bias: np.ndarray | None = None
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {self.source!r}")
        object.__setattr__(
            self, "weights", validate_weights(self.weights, self.model or "weights")
        )
        object.__setattr__(self, "stride", _pair(self.stride, "stride"))
        object.__setattr__(self, "padding", _pair(self.padding, "padding"))
        object.__setattr__(self, "dilation", _pair(self.dilation, "dilation"))
        groups = int(self.groups)
        if groups < 1 or self.n_filters % groups:
            raise ValueError(f"groups must be >= 1 and divide {self.n_filters}, got {groups}")
        object.__setattr__(self, "groups", groups)
        if self.bias is not None:
            bias = np.ascontiguousarray(self.bias, dtype=np.float32).reshape(-1)
            if bias.shape != (self.n_filters,) or not np.isfinite(bias).all():
                raise KernelSpecError(
                    f"{self.model or 'weights'}: bias of shape {np.shape(self.bias)} does not "
                    f"fit {self.n_filters} filters, or is not finite"
                )
            bias.setflags(write=False)
            object.__setattr__(self, "bias", bias)
        if not self.display_name:
            object.__setattr__(self, "display_name", self.model)
        self.weights.setflags(write=False)

    @property
    def n_filters(self) -> int:
        """Number of filters N."""
        return int(self.weights.shape[0])

    @property
    def n_channels(self) -> int:
        """Number of input channels C."""
        return int(self.weights.shape[1])

    @property
    def kernel_size(self) -> tuple[int, int]:
        """Kernel height and width (H, W)."""
        return int(self.weights.shape[2]), int(self.weights.shape[3])

    @property
    def stride_known(self) -> bool:
        """False for bare weight files, which do not record the stride (1 is assumed)."""
        return self.provenance.get("stride_known", True) is not False

    @property
    def is_trained(self) -> bool:
        """False for untrained (randomly initialised) weights."""
        return self.source != "random"

    def to_dict(self) -> dict[str, Any]:
        """Metadata as a JSON-serialisable dict (the weights themselves are left out)."""
        return {
            "model": self.model,
            "display_name": self.display_name,
            "layer": self.layer,
            "weights": self.source,
            "trained": self.is_trained,
            "shape": list(self.weights.shape),
            "stride": list(self.stride),
            "stride_known": self.stride_known,
            "padding": list(self.padding),
            "dilation": list(self.dilation),
            "groups": self.groups,
            "has_bias": self.bias is not None,
            "provenance": dict(self.provenance),
        }

    def __repr__(self) -> str:
        n, c, h, w = self.weights.shape
        return (
            f"KernelBank(model={self.model!r}, layer={self.layer!r}, source={self.source!r}, "
            f"shape=({n}, {c}, {h}, {w}), stride={self.stride})"
        )
