"""Images made by the network: class visualisation, inversion, DeepDream, texture, style.

Every one is an objective of `engine` ascended on an image:

- class visualisation (Simonyan et al. 2014): the logit of class c minus an L2 penalty,
  Fourier parameterisation and small random transforms;
- feature inversion (Mahendran and Vedaldi 2015): match a target image's features at one
  layer, from noise, with a total-variation prior;
- DeepDream (Mordvintsev et al. 2015): from an image, raise a layer's mean square activation;
- texture synthesis (Gatys et al. 2015): match the Gram matrices of a texture at layers;
- style transfer (Gatys et al. 2016): content features of one image plus the Gram matrices of
  another, from noise.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ...base.errors import KernelSpecError
from . import engine
from .model import drive

if TYPE_CHECKING:
    from .model import ExplainModel

__all__ = [
    "OBJECTIVES",
    "iter_synthesize",
    "layer_features",
    "style_layers",
    "synthesize",
]

#: The kinds of `synthesize`.
OBJECTIVES = ("class", "dream", "invert", "texture", "style")

DEFAULTS: dict[str, dict[str, Any]] = {
    "class": {"steps": 256, "lr": 0.05, "l2": 0.05},
    "invert": {"steps": 300, "lr": 0.05, "tv": 0.005},
    "dream": {"steps": 128, "lr": 0.1},
    "texture": {"steps": 300, "lr": 0.05},
    "style": {"steps": 300, "lr": 0.05, "style_weight": 1.0},
}


def layer_features(model: ExplainModel, pixels: Any, layers: Sequence[str]) -> dict[str, Any]:
    """The outputs of `layers` for (K, C, H, W) `pixels` (no gradient), as tensors."""
    import torch

    x = torch.as_tensor(np.asarray(pixels, dtype=np.float32), device=model.device)
    with torch.no_grad():
        return engine.activations(model, x, layers)


def style_layers(model: ExplainModel, n: int = 5) -> list[str]:
    """Gatys' choice for any net: its first `n` convolutions."""
    return model.conv_names()[:n]


def _check_image(model: ExplainModel, image: Any, what: str) -> np.ndarray:
    if image is None:
        raise KernelSpecError(f"the {what} objective needs an image")
    arr = np.asarray(image, dtype=np.float32)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[1] != model.channels:
        raise ValueError(f"image must be ({model.channels}, H, W), got {arr.shape}")
    return arr


def iter_synthesize(
    model: ExplainModel,
    kind: str,
    *,
    target: Any = None,
    layers: Sequence[str] | None = None,
    image: Any = None,
    style_image: Any = None,
    size: int = 128,
    steps: int | None = None,
    seed: int = 0,
    lr: float | None = None,
    l2: float | None = None,
    tv: float | None = None,
    style_weight: float | None = None,
) -> Generator[tuple[int, int], None, dict[str, Any]]:
    """Make images with one objective; yields ``(done, steps)``.

    Parameters
    ----------
    kind : {"class", "dream", "invert", "texture", "style"}
    target : int or sequence of int
        ``class``: the classes (one image each).
    layers : sequence of str
        ``dream`` / ``invert``: one layer (any named module); ``texture``: the Gram layers;
        ``style``: the content layer first, then the style layers.
    image : (C, H, W) array_like in [0, 1]
        ``dream``: the start; ``invert``: the image whose features are matched; ``texture``:
        the texture; ``style``: the content.
    style_image : (C, H', W') array_like
        ``style``: the style.
    size : int
        Side of the image for ``class`` (models with a fixed input size use theirs).

    Returns
    -------
    dict
        ``images`` (K, H, W, C) float32 in [0, 1]; ``objective`` (K,); ``history``
        (per-step objective); ``start`` and ``end`` (named measurements, see each kind);
        ``parameters``.
    """
    import torch

    if kind not in OBJECTIVES:
        raise KernelSpecError(f"objective must be one of {', '.join(OBJECTIVES)}, got {kind!r}")
    d = DEFAULTS[kind]
    steps = int(steps if steps is not None else d["steps"])
    lr = float(lr if lr is not None else d["lr"])
    opts: dict[str, Any] = {"steps": steps, "lr": lr, "seed": int(seed)}
    measures: dict[str, Callable[[Any], dict[str, float]]] = {}
    extra: dict[str, Any] = {}
    if kind == "class":
        from .classes import n_outputs

        targets = [int(t) for t in np.atleast_1d(np.asarray(target if target is not None else 0))]
        n = n_outputs(model)
        bad = [t for t in targets if not 0 <= t < n]
        if bad:
            raise KernelSpecError(
                f"class {bad[0]} is out of range: {model.name} has {n} classes (0..{n - 1})"
            )
        side = model.input_size or int(size)
        weight = float(l2 if l2 is not None else d["l2"])
        obj = engine.ClassLogit(torch.as_tensor(targets)) - weight * engine.L2()
        n_images = len(targets)
        # Jitter of 1/16 of the side: maximize's 8 px at 128 px, 2 px for LeNet5's 32.
        opts.update(
            size=(side, side), parameterisation="fourier", transforms=True, jitter=side / 16
        )
        extra = {"targets": targets, "l2": weight}
    else:
        names = list(layers or [])
        if not names:
            raise KernelSpecError(f"the {kind} objective needs at least one layer")
        for name in names:
            engine._module(model, name)
        base = _check_image(model, image, kind)
        _, _, h, w = base.shape
        n_images = 1
        opts.update(size=(h, w), transforms=False)
        if kind == "dream":
            obj = engine.ActivationNorm(names[0])
            opts.update(parameterisation="pixels", init=base)

            def measure(x: Any) -> dict[str, float]:
                f = layer_features(model, x, names[:1])[names[0]]
                energy = float(f.pow(2).mean())
                return {"activation_energy": energy, "activation_norm": energy**0.5}

            measures["norm"] = measure
        elif kind == "invert":
            target_f = layer_features(model, base, names[:1])[names[0]]
            weight = float(tv if tv is not None else d["tv"])
            obj = engine.FeatureMatch(names[0], target_f) - weight * engine.TotalVariation()
            opts.update(parameterisation="pixels", init=_noise_start(base, seed))
            extra = {"tv": weight}

            def measure(x: Any) -> dict[str, float]:
                f = layer_features(model, x, names[:1])[names[0]]
                err = float((f - target_f).norm() / target_f.norm())
                corr = float(np.corrcoef(np.ravel(x), base.ravel())[0, 1])
                return {"feature_error": err, "correlation": corr}

            measures["inversion"] = measure
        elif kind == "texture":
            feats = layer_features(model, base, names)
            grams = [engine.gram(feats[n_]) for n_ in names]
            obj = engine.GramMatch(names, grams)
            opts.update(parameterisation="pixels", init=_noise_start(base, seed))

            def measure(x: Any) -> dict[str, float]:
                f = layer_features(model, x, names)
                return {
                    f"gram_error_{n_}": float((engine.gram(f[n_]) - g).norm() / g.norm())
                    for n_, g in zip(names, grams, strict=True)
                }

            measures["gram"] = measure
        else:  # style
            if len(names) < 2:
                raise KernelSpecError(
                    "the style objective needs a content layer and at least one style layer"
                )
            style = _check_image(model, style_image, "style (its style image)")
            content_f = layer_features(model, base, names[:1])[names[0]]
            sfeats = layer_features(model, style, names[1:])
            grams = [engine.gram(sfeats[n_]) for n_ in names[1:]]
            weight = float(style_weight if style_weight is not None else d["style_weight"])
            content = engine.FeatureMatch(names[0], content_f)
            styled = engine.GramMatch(names[1:], grams)
            obj = content + weight * styled
            opts.update(parameterisation="pixels", init=_noise_start(base, seed))
            extra = {"content_layer": names[0], "style_layers": names[1:], "style_weight": weight}

            def measure(x: Any) -> dict[str, float]:
                acts = layer_features(model, x, names)
                xt = torch.as_tensor(np.asarray(x, dtype=np.float32))
                return {
                    "content_loss": float(-content(acts, xt)[0]),
                    "style_loss": float(-styled(acts, xt)[0]),
                }

            measures["style"] = measure
        extra["layers"] = names
    start_pixels = opts.get("init")
    result = yield from engine.iter_optimise(model, obj, n_images, **opts)
    final = np.moveaxis(result.images, -1, 1)
    start: dict[str, float] = {}
    end: dict[str, float] = {}
    for fn in measures.values():
        if start_pixels is not None:
            start.update(fn(start_pixels))
        end.update(fn(final))
    return {
        "images": result.images,
        "objective": result.objective,
        "history": result.history,
        "start": start,
        "end": end,
        "parameters": {"objective": kind, **result.parameters, **extra, "seed": int(seed)},
    }


def _noise_start(like: np.ndarray, seed: int) -> np.ndarray:
    """Uniform noise in [0, 1] the shape of `like`, from `seed` (numpy: device-independent)."""
    return np.random.default_rng(seed).uniform(0, 1, like.shape).astype(np.float32)


def synthesize(
    model: ExplainModel,
    kind: str,
    *,
    progress: Callable[[int, int], None] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """`iter_synthesize` run to its end (see there)."""
    return drive(iter_synthesize(model, kind, **options), progress)
