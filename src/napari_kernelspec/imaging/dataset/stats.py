"""Per-filter statistics over a dataset, accumulated batch by batch and mergeable.

For every filter and every class the accumulator keeps four numbers: the count of map
positions seen, how many of them fire (activation after ReLU above 0), the mean of the
activation after ReLU and the sum of squared deviations from it (M2). A batch is reduced
to the same four numbers and combined with Chan, Golub and LeVeque's parallel update
(1979; Welford's update is its one-value case):

    n = na + nb,  d = mb - ma,  mean = ma + d nb / n,  M2 = M2a + M2b + d^2 na nb / n

so partitions computed apart (Dask workers) merge into exactly the statistics of one pass,
and the state is (classes + 1, filters) arrays whatever the number of images.

The class-selectivity index of a filter (Morcos, Barrett, Rabinowitz and Botvinick 2018,
"On the importance of single directions for generalization", ICLR) is

    SI = (mu_max - mu_rest) / (mu_max + mu_rest)

with mu_max the largest of its per-class mean activations (after ReLU, so all >= 0) and
mu_rest the mean of the other classes' means: 0 when every class drives it equally, 1 when
only one class drives it at all. Undefined (NaN) with fewer than two classes or a filter
that never fires.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["FilterStatistics", "selectivity_index"]

_FIELDS = ("count", "fires", "mean", "m2")


@dataclass
class FilterStatistics:
    """Streaming per-filter, per-class statistics of a layer's activation after ReLU.

    Attributes
    ----------
    count : (S, N) ndarray of float64
        Map positions seen per slot and filter. Slots 0 .. S-2 are the classes, slot S-1
        the images without a class.
    fires : (S, N) ndarray of float64
        Positions where the activation is above 0.
    mean : (S, N) ndarray of float64
    m2 : (S, N) ndarray of float64
        Sum of squared deviations from `mean`.
    """

    count: np.ndarray
    fires: np.ndarray
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def empty(cls, n_classes: int, n_filters: int) -> FilterStatistics:
        """No images yet: `n_classes` classes plus the unlabelled slot, `n_filters` filters."""
        shape = (int(n_classes) + 1, int(n_filters))
        return cls(*(np.zeros(shape) for _ in _FIELDS))

    @property
    def n_classes(self) -> int:
        return int(self.count.shape[0]) - 1

    @property
    def n_filters(self) -> int:
        return int(self.count.shape[1])

    def add(self, activations: np.ndarray, labels: np.ndarray) -> None:
        """Add a batch of maps.

        Parameters
        ----------
        activations : (B, N, H, W) array_like
            The layer's activation after ReLU (float).
        labels : (B,) array_like of int
            Class of each image, -1 for none.
        """
        acts = np.asarray(activations)
        labels = np.asarray(labels, np.int64)
        if acts.ndim != 4 or acts.shape[1] != self.n_filters or len(labels) != len(acts):
            raise ValueError(
                f"activations must be (B, {self.n_filters}, H, W) with one label per image, "
                f"got {acts.shape} and {labels.shape}"
            )
        if labels.size and (labels.max() >= self.n_classes or labels.min() < -1):
            raise ValueError(f"labels must be in -1 .. {self.n_classes - 1}")
        slots = np.where(labels < 0, self.n_classes, labels)
        for slot in np.unique(slots):
            # float32 maps, float64 sums: no float64 copy of a batch's maps is made
            x = acts if (slots == slot).all() else acts[slots == slot]
            n = float(x.shape[0] * x.shape[2] * x.shape[3])
            if n == 0:
                continue
            mean = x.sum(axis=(0, 2, 3), dtype=np.float64) / n
            deviation = x - mean.astype(x.dtype)[None, :, None, None]
            np.square(deviation, out=deviation)
            m2 = deviation.sum(axis=(0, 2, 3), dtype=np.float64)
            del deviation
            fires = np.count_nonzero(x > 0, axis=(0, 2, 3)).astype(np.float64)
            self._combine(slot, n, fires, mean, m2)

    def _combine(self, slot: int, n: float, fires, mean, m2) -> None:
        na = self.count[slot]
        total = na + n
        delta = mean - self.mean[slot]
        self.mean[slot] = self.mean[slot] + delta * (n / total)
        self.m2[slot] = self.m2[slot] + m2 + delta**2 * na * n / total
        self.fires[slot] = self.fires[slot] + fires
        self.count[slot] = total

    def merge(self, other: FilterStatistics) -> FilterStatistics:
        """The statistics of both sets of images (a new object; Chan's parallel update)."""
        if self.count.shape != other.count.shape:
            raise ValueError(
                f"cannot merge statistics of {self.count.shape} and {other.count.shape}"
            )
        out = FilterStatistics(*(getattr(self, f).copy() for f in _FIELDS))
        for slot in range(out.count.shape[0]):
            n = other.count[slot]
            if not n.any():
                continue
            na = out.count[slot]
            total = na + n
            safe = np.where(total > 0, total, 1.0)
            delta = other.mean[slot] - out.mean[slot]
            out.mean[slot] = out.mean[slot] + delta * n / safe
            out.m2[slot] = out.m2[slot] + other.m2[slot] + delta**2 * na * n / safe
            out.fires[slot] = out.fires[slot] + other.fires[slot]
            out.count[slot] = total
        return out

    def overall(self) -> FilterStatistics:
        """All slots merged into one: (1, N) arrays."""
        out = FilterStatistics.empty(0, self.n_filters)
        for slot in range(self.count.shape[0]):
            one = FilterStatistics(*(getattr(self, f)[slot : slot + 1] for f in _FIELDS))
            out = out.merge(one)
        return out

    def fire_fraction(self) -> np.ndarray:
        """(S, N): share of positions where the filter fires (NaN for an empty slot)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.count > 0, self.fires / self.count, np.nan)

    def variance(self) -> np.ndarray:
        """(S, N): population variance of the activation (NaN for an empty slot)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.count > 0, self.m2 / self.count, np.nan)

    def means(self) -> np.ndarray:
        """(S, N): mean activation (NaN for an empty slot)."""
        return np.where(self.count > 0, self.mean, np.nan)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The state as plain arrays (for storing a partition)."""
        return {f"stats_{f}": getattr(self, f) for f in _FIELDS}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> FilterStatistics:
        return cls(*(np.array(arrays[f"stats_{f}"], np.float64) for f in _FIELDS))


def selectivity_index(class_means: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Morcos et al.'s class-selectivity index of every filter, and its preferred class.

    Parameters
    ----------
    class_means : (C, N) array_like
        Mean activation after ReLU (>= 0) of each filter over each class's images; NaN for
        a class without images (left out).

    Returns
    -------
    selectivity : (N,) ndarray of float64
        ``(mu_max - mu_rest) / (mu_max + mu_rest)`` in [0, 1]; NaN with fewer than two
        classes or when the filter never fires.
    preferred : (N,) ndarray of int64
        The class with the largest mean, -1 where undefined.
    """
    means = np.asarray(class_means, np.float64)
    if means.ndim != 2:
        raise ValueError(f"class_means must be (C, N), got shape {means.shape}")
    present = ~np.isnan(means).all(axis=1)
    means = means[present]
    classes = np.flatnonzero(present)
    n_filters = means.shape[1]
    if len(means) < 2:
        return np.full(n_filters, np.nan), np.full(n_filters, -1, np.int64)
    best = np.argmax(means, axis=0)
    mu_max = means[best, np.arange(n_filters)]
    mu_rest = (means.sum(axis=0) - mu_max) / (len(means) - 1)
    total = mu_max + mu_rest
    with np.errstate(invalid="ignore", divide="ignore"):
        si = np.where(total > 0, (mu_max - mu_rest) / total, np.nan)
    preferred = np.where(total > 0, classes[best], -1).astype(np.int64)
    return si, preferred
