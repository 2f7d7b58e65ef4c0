"""What one slice of a dataset contributes: statistics, top patches, embeddings, thumbnails.

`process_partition` is a module-level function so that a Dask worker imports it by name.
It reads its images itself (an item is a file path or a bundled digit), runs them through
the layer in batches of `DatasetParameters.batch_size` (consecutive images of one size are
stacked into one tensor), and keeps only what is bounded per filter (`FilterStatistics`,
the k best patches) or small per image (one embedding vector, one 32x32 thumbnail). The
maps of a batch are dropped before the next batch is read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...base.bank import KernelBank
from ...base.errors import KernelSpecError
from .. import network as _network
from ..images import prepare
from ..maps import FeatureMaps
from ..patches import TopPatches, patches_from_maps
from .sources import load_item, thumbnail
from .stats import FilterStatistics

__all__ = [
    "EMBEDDINGS",
    "DatasetParameters",
    "PartitionResult",
    "PartitionTask",
    "merge_top_patches",
    "process_partition",
]

#: Accepted values of ``embedding``: the global average of the layer's maps, or the input
#: of the model's last linear layer (its penultimate features).
EMBEDDINGS = ("layer", "penultimate")


@dataclass(frozen=True)
class DatasetParameters:
    """How every partition is computed (also the fingerprint a resume checks).

    Attributes
    ----------
    embedding : {"layer", "penultimate"}
    k : int
        Top patches per filter.
    normalize : {"auto", "none"}
        As for `feature_maps`.
    batch_size : int
        Images per forward pass.
    """

    embedding: str = "layer"
    k: int = 9
    normalize: str = "auto"
    batch_size: int = 16

    def to_dict(self) -> dict[str, Any]:
        return {
            "embedding": self.embedding,
            "k": self.k,
            "normalize": self.normalize,
            "batch_size": self.batch_size,
        }


@dataclass(frozen=True)
class PartitionTask:
    """Images ``start .. stop - 1`` of a dataset (their items travel with the task)."""

    start: int
    items: tuple[tuple[str, int], ...]
    n_classes: int
    bank: KernelBank
    params: DatasetParameters

    @property
    def stop(self) -> int:
        return self.start + len(self.items)


@dataclass
class PartitionResult:
    """What images ``start .. stop - 1`` contribute.

    Attributes
    ----------
    start, stop : int
    stats : FilterStatistics
    top : TopPatches
        Image indices are dataset rows (``start`` added).
    embedding : (M, D) ndarray of float32
    thumbnails : (M, 32, 32, 3) ndarray of uint8
    meta : dict
        The first image's preparation (normalisation, channels).
    """

    start: int
    stop: int
    stats: FilterStatistics
    top: TopPatches
    embedding: np.ndarray
    thumbnails: np.ndarray
    meta: dict[str, Any]

    def to_arrays(self) -> dict[str, np.ndarray]:
        import json

        return {
            **self.stats.to_arrays(),
            "range": np.array([self.start, self.stop]),
            "top_image": self.top.image_index,
            "top_boxes": self.top.boxes,
            "top_activations": self.top.activations,
            "top_starts": self.top.starts,
            "top_rf": self.top.receptive_field,
            "embedding": self.embedding,
            "thumbnails": self.thumbnails,
            "meta": np.array(json.dumps({"meta": self.meta, "top": self.top.meta})),
        }

    @classmethod
    def from_arrays(cls, arrays: Any, bank: KernelBank) -> PartitionResult:
        import json

        meta = json.loads(str(arrays["meta"][()]))
        start, stop = (int(v) for v in arrays["range"])
        top = TopPatches(
            image_index=np.array(arrays["top_image"]),
            boxes=np.array(arrays["top_boxes"]),
            activations=np.array(arrays["top_activations"]),
            receptive_field=np.array(arrays["top_rf"]),
            starts=np.array(arrays["top_starts"]),
            n_images=stop - start,
            meta=meta["top"],
            bank=bank,
        )
        return cls(
            start,
            stop,
            FilterStatistics.from_arrays(arrays),
            top,
            np.array(arrays["embedding"]),
            np.array(arrays["thumbnails"]),
            meta["meta"],
        )


def merge_top_patches(parts: Sequence[TopPatches]) -> TopPatches:
    """The k best patches of each filter over several sets (image indices already global).

    Ties keep the earlier set's patch first, so merging partitions in order gives what one
    pass over all the images gives.
    """
    if not parts:
        raise KernelSpecError("no patches to merge")
    first = parts[0]
    k = first.k
    values = np.concatenate([np.nan_to_num(p.activations, nan=-np.inf) for p in parts], axis=1)
    keep = np.argsort(-values, axis=1, kind="stable")[:, :k]
    rows = np.arange(len(values))[:, None]

    def pick(name: str) -> np.ndarray:
        return np.concatenate([getattr(p, name) for p in parts], axis=1)[rows, keep]

    best = values[rows, keep]
    missing = ~np.isfinite(best)
    image = pick("image_index")
    image[missing] = -1
    meta = dict(first.meta)
    n_images = sum(p.n_images for p in parts)
    meta["n_images"] = n_images
    return TopPatches(
        image_index=image,
        boxes=pick("boxes"),
        activations=np.where(missing, np.nan, best),
        receptive_field=first.receptive_field,
        starts=pick("starts"),
        n_images=n_images,
        meta=meta,
        bank=first.bank,
    )


# --- the layer and the model, built once per process ----------------------------------------


@dataclass(frozen=True, eq=False)
class _Runner:
    layer: Any  # (B, C, H, W) float32 tensor -> (B, N, H', W') signed tensor
    penultimate: Any  # same input -> (B, D) tensor, or None
    in_channels: int
    geometry: _network.Geometry
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    normalisation: str


def _bank_key(bank: KernelBank) -> tuple[Any, ...]:
    return (
        bank.model,
        bank.source,
        bank.layer,
        str(bank.provenance.get("file")),
        bank.weights.shape,
        float(np.asarray(bank.weights, np.float64).sum()),
    )


_runners: dict[tuple[Any, ...], _Runner] = {}


def _runner(bank: KernelBank, embedding: str) -> _Runner:
    key = (*_bank_key(bank), embedding)
    if key not in _runners:
        if len(_runners) >= 2:
            _runners.pop(next(iter(_runners)))
        _runners[key] = _build_runner(bank, embedding)
    return _runners[key]


def _build_runner(bank: KernelBank, embedding: str) -> _Runner:
    import torch
    import torch.nn.functional as F

    mean, std, norm_name = _network.input_normalisation(bank)
    penultimate = None
    if _network.is_first_layer(bank):
        weight = torch.from_numpy(np.array(bank.weights))
        bias = torch.from_numpy(np.array(bank.bias)) if bank.bias is not None else None

        def layer(x: Any) -> Any:
            return F.conv2d(x, weight, bias, bank.stride, bank.padding, bank.dilation, bank.groups)

        in_channels = bank.n_channels * bank.groups
        geometry = _network.conv_geometry(
            bank.kernel_size, bank.stride, bank.padding, bank.dilation
        )
    else:
        net = _network.network(bank)

        def layer(x: Any) -> Any:
            return net.module(x)["out"]

        in_channels, geometry = net.in_channels, net.geometry
    if embedding == "penultimate":
        penultimate = _penultimate(bank)
    return _Runner(layer, penultimate, in_channels, geometry, mean, std, norm_name)


def _penultimate(bank: KernelBank) -> Any:
    """(B, C, H, W) -> (B, D): the input of the model's last ``nn.Linear``."""
    from torch import nn

    if bank.source not in _network.MODEL_SOURCES:
        raise KernelSpecError(
            f"{bank.display_name} is a weights file: it has no classifier whose penultimate "
            "features could embed the images; embed with the layer's average maps instead"
        )
    net, _ = _network._build(bank)  # the very weights the bank was read from
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise KernelSpecError(
            f"{bank.display_name} has no linear layer: embed with the layer's average maps"
        )
    captured: list[Any] = []
    linears[-1].register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
    net.eval()

    def run(x: Any) -> Any:
        captured.clear()
        net(x)
        return captured[-1].flatten(1)

    return run


# --- one partition -------------------------------------------------------------------------


def process_partition(task: PartitionTask) -> PartitionResult:
    """Run the images of `task` through the layer; keep only the bounded results.

    Raises
    ------
    KernelSpecError
        An image that cannot be read or is too small for the layer (the message names it).
    """
    import torch

    params = task.params
    run = _runner(task.bank, params.embedding)
    bank = task.bank
    stats = FilterStatistics.empty(task.n_classes, bank.n_filters)
    tops: list[TopPatches] = []
    vectors: list[np.ndarray] = []
    thumbs: list[np.ndarray] = []
    meta: dict[str, Any] = {}
    geometry = run.geometry
    items = task.items
    with torch.inference_mode():
        for b0 in range(0, len(items), params.batch_size):
            batch = items[b0 : b0 + params.batch_size]
            inputs, labels = [], []
            for key, label in batch:
                try:
                    image = load_item(key)
                    prep = prepare(
                        image, run.in_channels, params.normalize, mean=run.mean, std=run.std
                    )
                except KernelSpecError as exc:
                    raise KernelSpecError(f"{key}: {exc}") from None
                if not meta:
                    meta = {
                        k: v
                        for k, v in prep.meta.items()
                        if k not in ("image_shape", "image_dtype")
                    }
                    if params.normalize == "auto" and prep.mean is not None:
                        meta["normalisation"] = run.normalisation
                inputs.append(prep.tile(0, prep.shape[0]))
                labels.append(label)
                thumbs.append(thumbnail(image))
            for group in _same_shape_runs(inputs):
                x = torch.from_numpy(np.concatenate([inputs[i] for i in group]))
                try:
                    out = run.layer(x)
                except RuntimeError as exc:
                    key = batch[group[0]][0]
                    raise KernelSpecError(
                        f"{key} ({x.shape[2]}x{x.shape[3]} px) cannot go through "
                        f"{bank.layer} of {bank.display_name}: {str(exc).splitlines()[0]}; "
                        "give larger images"
                    ) from None
                signed = out.numpy()  # the layer's response before ReLU: the patches'
                h, w = x.shape[2], x.shape[3]
                maps = (
                    FeatureMaps(
                        maps=m,
                        scale=np.asarray(geometry.scale, np.float64),
                        translate=np.asarray(geometry.translate, np.float64),
                        receptive_field=np.asarray(geometry.receptive_field, np.int64),
                        image_shape=(h, w),
                        meta={},
                        bank=bank,
                    )
                    for m in signed
                )
                found = patches_from_maps(maps, params.k)
                first = task.start + b0 + group[0]
                index = np.where(found.image_index >= 0, found.image_index + first, -1)
                tops.append(_with_images(found, index))
                relu = np.maximum(signed, 0, out=signed)  # in place: the maps are this batch's
                stats.add(relu, np.asarray([labels[i] for i in group]))
                if run.penultimate is not None:
                    try:
                        vector = run.penultimate(x)
                    except RuntimeError as exc:  # a classifier made for one input size
                        key = batch[group[0]][0]
                        raise KernelSpecError(
                            f"{key} ({h}x{w} px) cannot go through the whole of "
                            f"{bank.display_name} to its penultimate features: "
                            f"{str(exc).splitlines()[0]}; give images of the size the model "
                            "takes, or embed with the layer's average maps"
                        ) from None
                    vectors.append(vector.numpy().astype(np.float32))
                else:
                    vectors.append(relu.mean(axis=(2, 3)).astype(np.float32))
                del out, signed, relu
    top = merge_top_patches(tops)
    top.meta.update(n_images=len(items))
    return PartitionResult(
        task.start,
        task.stop,
        stats,
        top,
        np.concatenate(vectors) if vectors else np.zeros((0, 0), np.float32),
        np.stack(thumbs) if thumbs else np.zeros((0, 32, 32, 3), np.uint8),
        meta,
    )


def _with_images(found: TopPatches, index: np.ndarray) -> TopPatches:
    import dataclasses

    return dataclasses.replace(found, image_index=index)


def _same_shape_runs(inputs: list[np.ndarray]) -> list[list[int]]:
    """Indices of consecutive inputs of one shape (each run is one stacked tensor)."""
    runs: list[list[int]] = []
    for i, x in enumerate(inputs):
        if runs and inputs[runs[-1][0]].shape == x.shape:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs
