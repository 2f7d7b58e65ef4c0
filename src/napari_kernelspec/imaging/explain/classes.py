"""Which pixels make the network say class c: saliency, Grad-CAM, occlusion, GrabCut.

Captum computes every attribution (``Saliency``, ``NoiseTunnel`` for SmoothGrad,
``IntegratedGradients``, ``Occlusion`` with ``perturbations_per_eval`` windows per forward
pass, ``GuidedBackprop``, ``LayerGradCam`` + ``LayerAttribution.interpolate``,
``GuidedGradCam``); OpenCV's ``grabCut`` segments the salient object, seeded from the
smoothed gradient saliency (foreground where it is strong, background where it is weak).

The target of every method is one class score: the logit (gradient methods, Grad-CAM) or
the softmax probability (occlusion: the drop in probability when a window is hidden). With
no target given, the predicted class is explained.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from ...base.errors import KernelSpecError
from .model import drive

if TYPE_CHECKING:
    import torch

    from .model import ExplainModel

__all__ = [
    "CLASS_METHODS",
    "class_attribution",
    "class_names",
    "grabcut",
    "iter_class_attribution",
    "predict",
    "saliency_seeds",
]

#: Methods that explain a class score on an image, in the order the CLI lists them.
CLASS_METHODS = (
    "gradient",
    "smoothgrad",
    "integrated-gradients",
    "occlusion",
    "guided",
    "gradcam",
    "guided-gradcam",
    "grabcut",
)

#: SmoothGrad (Smilkov et al. 2017): samples and noise (std, in pixel units of [0, 1]).
SMOOTHGRAD_SAMPLES = 16
SMOOTHGRAD_NOISE = 0.15
#: Integrated gradients: Riemann steps from the black image.
IG_STEPS = 32


@functools.cache
def _imagenet_categories() -> tuple[str, ...]:
    from torchvision.models import get_model_weights

    return tuple(get_model_weights("alexnet").DEFAULT.meta["categories"])


def class_names(model: ExplainModel, n_classes: int | None = None) -> list[str] | None:
    """Names of the model's classes, where the weights know them.

    ImageNet's 1,000 categories (from torchvision's weights meta) for torchvision models
    with 1,000 outputs; ``"0"`` .. ``"9"`` for LeNet5; None otherwise.
    """
    if n_classes is None:
        n_classes = n_outputs(model)
    if model.model == "lenet5" and n_classes == 10:
        return [str(i) for i in range(10)]
    if n_classes == 1000 and model.channels == 3 and model.source != "array":
        try:
            return list(_imagenet_categories())
        except Exception:  # an old torchvision: names are a nicety
            return None
    return None


def n_outputs(model: ExplainModel) -> int:
    """Number of classes (the logits' length) for the model's usual input."""
    import torch

    side = model.input_size or 224
    with torch.no_grad():
        out = model.net(torch.zeros(1, model.channels, side, side, device=model.device))
    if out.ndim != 2:
        raise KernelSpecError(
            f"{model.name} does not output class scores (its output has shape "
            f"{tuple(out.shape)}); class explanations need a classifier"
        )
    return int(out.shape[1])


def predict(model: ExplainModel, pixels: Any) -> np.ndarray:
    """Softmax probabilities, (K, C, H, W) pixels in [0, 1] -> (K, n_classes) float64."""
    import torch

    x = torch.as_tensor(np.asarray(pixels, dtype=np.float32), device=model.device)
    with torch.no_grad():
        out = model.net(x)
    if out.ndim != 2:
        raise KernelSpecError(
            f"{model.name} does not output class scores (shape {tuple(out.shape)}); "
            "class explanations need a classifier"
        )
    return out.softmax(dim=1).double().cpu().numpy()


def _targets(model: ExplainModel, x: torch.Tensor, target: Any) -> tuple[list[int], np.ndarray]:
    probs = predict(model, x.detach().cpu().numpy())
    n = probs.shape[1]
    if target is None:
        targets = probs.argmax(axis=1).tolist()
    else:
        targets = [int(t) for t in np.broadcast_to(np.asarray(target), (len(probs),))]
        bad = [t for t in targets if not 0 <= t < n]
        if bad:
            raise KernelSpecError(
                f"class {bad[0]} is out of range: {model.name} has {n} classes (0..{n - 1})"
            )
    return targets, probs


@contextlib.contextmanager
def _guided_relus(model: ExplainModel, guided: bool) -> Iterator[None]:
    """Functional ReLUs get guided backprop's rule too (see `attribution`)."""
    from .attribution import _functional_relu_rule, _Tracker

    tracker = _Tracker(model.net)
    try:
        with (
            _functional_relu_rule(tracker, "guided" if guided else None),
            warnings.catch_warnings(),
        ):
            warnings.filterwarnings("ignore", module=r"captum\..*")
            warnings.filterwarnings("ignore", message=".*backward hook.*")
            yield
    finally:
        tracker.remove()


def _has_relu(model: ExplainModel) -> bool:
    from torch import nn

    return any(isinstance(m, nn.ReLU) for m in model.net.modules())


def class_attribution(
    model: ExplainModel,
    pixels: Any,
    method: str = "gradient",
    target: Any = None,
    **options: Any,
) -> dict[str, Any]:
    """`iter_class_attribution` run to its end (see there)."""
    progress = options.pop("progress", None)
    return drive(iter_class_attribution(model, pixels, method, target, **options), progress)


def iter_class_attribution(
    model: ExplainModel,
    pixels: Any,
    method: str = "gradient",
    target: Any = None,
    *,
    layer: str | None = None,
    window: int = 8,
    window_stride: int = 1,
    baseline: float = 0.0,
    samples: int = SMOOTHGRAD_SAMPLES,
    noise: float = SMOOTHGRAD_NOISE,
    ig_steps: int = IG_STEPS,
    batch: int = 64,
    seed: int = 0,
    show_progress: bool = False,
) -> Generator[tuple[int, int], None, dict[str, Any]]:
    """Attribute class scores of K images to their pixels; yields ``(done, K)`` images.

    ``gradient`` and ``smoothgrad`` are signed (the sign says which way a pixel pushes the
    score; Captum's ``abs=True`` default hides it); GrabCut seeds from the magnitude.

    Parameters
    ----------
    pixels : (K, C, H, W) array_like
        Images in [0, 1] as the model takes them (see `attribution.prepare_image`).
    method : str
        One of `CLASS_METHODS`.
    target : int or (K,) ints, optional
        The class explained; default each image's predicted class.
    layer : str, optional
        Grad-CAM's convolution (default the last).
    window, window_stride, baseline
        Occlusion: squares of `window` pixels set to `baseline`.
    samples, noise
        SmoothGrad (and GrabCut's saliency): noisy copies and their standard deviation.
    ig_steps : int
        Integrated gradients' steps from the black image.
    batch : int
        Occluded / noisy / interpolated images per forward pass.
    show_progress : bool
        Occlusion: Captum's own bar of window positions on stderr (for long runs).

    Returns
    -------
    dict
        ``attributions`` (K, C, H, W) float32, (K, 1, H, W) for Grad-CAM; ``masks``
        (K, H, W) bool for GrabCut (with the saliency that seeded it as attributions);
        ``targets``, ``predicted`` (lists of int), ``probabilities`` (K, n_classes);
        ``parameters``; ``caveats``.
    """
    import torch

    if method not in CLASS_METHODS:
        raise KernelSpecError(f"method must be one of {', '.join(CLASS_METHODS)}, got {method!r}")
    arr = np.asarray(pixels, dtype=np.float32)
    if arr.ndim != 4 or arr.shape[1] != model.channels:
        raise ValueError(f"pixels must be (K, {model.channels}, H, W), got {arr.shape}")
    x = torch.from_numpy(np.ascontiguousarray(arr)).to(model.device)
    k, c, h, w = x.shape
    targets, probs = _targets(model, x, target)
    parameters: dict[str, Any] = {"score": "probability" if method == "occlusion" else "logit"}
    caveats: list[str] = []
    conv_name = None
    if method in ("gradcam", "guided-gradcam"):
        conv_name = model.resolve_layer(layer or "last")
        parameters["layer"] = conv_name
    if method in ("guided", "guided-gradcam") and not _has_relu(model):
        caveats.append("no ReLU in this model: guided backprop equals the gradient here")
    if method == "occlusion":
        window, window_stride = int(window), int(window_stride)
        if not 1 <= window <= min(h, w):
            raise KernelSpecError(f"the occlusion window is {window}; give 1..{min(h, w)} px")
        if not 1 <= window_stride <= window:
            raise KernelSpecError(f"the window stride is {window_stride}; give 1..{window}")
        parameters.update(window=window, window_stride=window_stride, baseline=float(baseline))
    if method in ("smoothgrad", "grabcut"):
        parameters.update(samples=int(samples), noise=float(noise), seed=int(seed))
    if method == "integrated-gradients":
        parameters.update(steps=int(ig_steps), baseline="black (0)")
    n_attr = 1 if method == "gradcam" else c
    out = np.empty((k, n_attr, h, w), dtype=np.float32)
    masks = np.zeros((k, h, w), dtype=bool) if method == "grabcut" else None
    for i in range(k):
        xi = x[i : i + 1].clone()
        res = _one(
            model, xi, targets[i], method, conv_name, parameters, batch, seed + i, show_progress
        )
        out[i] = res.detach().cpu().numpy()[0]
        if masks is not None:
            masks[i] = grabcut(arr[i], out[i])
        yield i + 1, k
    if method == "grabcut":
        parameters["segmentation"] = "cv2.grabCut seeded from smoothed SmoothGrad saliency"
    return {
        "attributions": out,
        "masks": masks,
        "targets": targets,
        "predicted": probs.argmax(axis=1).tolist(),
        "probabilities": probs,
        "parameters": parameters,
        "caveats": caveats,
    }


def _one(
    model: ExplainModel,
    x: torch.Tensor,
    target: int,
    method: str,
    conv_name: str | None,
    parameters: dict[str, Any],
    batch: int,
    seed: int,
    show_progress: bool = False,
) -> torch.Tensor:
    import torch
    from captum.attr import (
        GuidedBackprop,
        GuidedGradCam,
        IntegratedGradients,
        LayerAttribution,
        LayerGradCam,
        NoiseTunnel,
        Occlusion,
        Saliency,
    )

    net = model.net
    with _guided_relus(model, method in ("guided", "guided-gradcam")):
        if method == "gradient":
            return Saliency(net).attribute(x.requires_grad_(True), target=target, abs=False)
        if method in ("smoothgrad", "grabcut"):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                return NoiseTunnel(Saliency(net)).attribute(
                    x.requires_grad_(True),
                    nt_type="smoothgrad",
                    nt_samples=int(parameters["samples"]),
                    nt_samples_batch_size=batch,
                    stdevs=float(parameters["noise"]),
                    target=target,
                    abs=method == "grabcut",
                )
        if method == "integrated-gradients":
            return IntegratedGradients(net).attribute(
                x.requires_grad_(True),
                baselines=0.0,
                target=target,
                n_steps=int(parameters["steps"]),
                internal_batch_size=batch,
            )
        if method == "guided":
            return GuidedBackprop(net).attribute(x.requires_grad_(True), target=target)
        if method == "occlusion":
            size, stride = parameters["window"], parameters["window_stride"]
            c = x.shape[1]

            def prob(inputs: torch.Tensor) -> torch.Tensor:
                return net(inputs).softmax(dim=1)

            with torch.no_grad():
                return Occlusion(prob).attribute(
                    x,
                    sliding_window_shapes=(c, size, size),
                    strides=(c, stride, stride),
                    baselines=float(parameters["baseline"]),
                    target=target,
                    perturbations_per_eval=batch,
                    show_progress=show_progress,
                )
        assert conv_name is not None
        conv = model.conv(conv_name)
        if method == "gradcam":
            cam = LayerGradCam(net, conv).attribute(
                x.requires_grad_(True), target=target, relu_attributions=True
            )
            return LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), "bilinear")
        return GuidedGradCam(net, conv).attribute(x.requires_grad_(True), target=target)


def saliency_seeds(saliency: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    """GrabCut's starting mask from a saliency map: (H, W) of ``cv2.GC_*`` labels.

    The map (|attribution| summed over channels, Gaussian-smoothed with `sigma` px, scaled
    to its maximum) gives sure foreground above 0.4, probable foreground above 0.15, sure
    background below 0.05 and probable background elsewhere (chosen on 20 held-out digits
    of the trained LeNet5: median IoU 0.55 with the digit's pixels, 0.49 for the seeds
    alone; sigma 1 px gave 0.47).
    """
    import cv2

    s = np.abs(np.asarray(saliency, dtype=np.float32))
    if s.ndim == 3:
        s = s.sum(axis=0)
    s = cv2.GaussianBlur(s, (0, 0), sigma)
    top = float(s.max())
    s = s / top if top > 0 else s
    mask = np.full(s.shape, cv2.GC_PR_BGD, np.uint8)
    mask[s > 0.15] = cv2.GC_PR_FGD
    mask[s > 0.4] = cv2.GC_FGD
    mask[s < 0.05] = cv2.GC_BGD
    return mask


def grabcut(image: Any, saliency: Any, iterations: int = 5, sigma: float = 2.0) -> np.ndarray:
    """Segment the salient object of `image` with OpenCV's GrabCut, seeded by `saliency`.

    Parameters
    ----------
    image : (C, H, W) array_like in [0, 1]
    saliency : (H, W) or (C', H, W) array_like
        Its magnitude is used (see `saliency_seeds`).

    Returns
    -------
    (H, W) ndarray of bool
        The foreground.
    """
    import cv2

    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 3:
        raise ValueError(f"image must be (C, H, W), got {img.shape}")
    rgb = np.moveaxis(img, 0, -1)
    if rgb.shape[-1] == 1:
        rgb = np.repeat(rgb, 3, axis=-1)
    u8 = np.ascontiguousarray((np.clip(rgb, 0, 1) * 255).round().astype(np.uint8))
    mask = saliency_seeds(saliency, sigma)
    fg = np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD))
    if fg.all() or not fg.any():
        return fg
    bgd = np.zeros((1, 65), np.float64)
    fgd = np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(u8, mask, None, bgd, fgd, int(iterations), cv2.GC_INIT_WITH_MASK)
    except cv2.error:  # too few samples for a colour model: keep the seeds
        return fg
    return np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD))
