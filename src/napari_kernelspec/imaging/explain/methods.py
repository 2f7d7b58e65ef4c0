"""The registry of explanation methods, and one call per family that returns an `Explanation`.

>>> METHODS["gradcam"].family, METHODS["gradcam"].output       # doctest: +SKIP
('class', 'attributions')
>>> res = explain_class(model, image, "gradcam", target=3)     # doctest: +SKIP
>>> res.meta["predicted_class"], res.attributions.shape        # doctest: +SKIP
(3, (1, 1, 32, 32))

Families (in the spirit of Captum's attribution classes, each with a typed result):

- ``filter``: one filter of a conv layer (`explain`: maximize, deconvnet, guided, gradient,
  occlusion);
- ``class``: a class score on an image (`explain_class`: `classes.CLASS_METHODS`);
- ``synthesis``: images made by ascending an objective (`synthesize_images`: class, dream,
  invert, texture, style);
- ``adversarial``: FGSM / PGD (`adversarial_example`).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ...base.errors import KernelSpecError
from .model import drive
from .result import Explanation, diverging

if TYPE_CHECKING:
    from .model import ExplainModel

__all__ = [
    "METHODS",
    "Method",
    "adversarial_example",
    "explain_class",
    "iter_adversarial_example",
    "iter_explain_class",
    "iter_synthesize_images",
    "synthesize_images",
]


@dataclass(frozen=True)
class Method:
    """One explanation method.

    Attributes
    ----------
    name : str
    family : {"filter", "class", "synthesis", "adversarial"}
    output : {"images", "attributions", "masks"}
        The main array of its npz.
    summary : str
    reference : str
    """

    name: str
    family: str
    output: str
    summary: str
    reference: str


METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        Method("maximize", "filter", "images", "image maximising a filter", "Olah et al. 2017"),
        Method("deconvnet", "filter", "attributions", "deconvnet of a filter", "Zeiler 2014"),
        Method("guided", "filter", "attributions", "guided backprop", "Springenberg 2015"),
        Method("gradient", "class", "attributions", "gradient of the score", "Simonyan 2014"),
        Method("occlusion", "class", "attributions", "probability drop", "Zeiler 2014"),
        Method("smoothgrad", "class", "attributions", "noise-averaged gradient", "Smilkov 2017"),
        Method("integrated-gradients", "class", "attributions", "path integral", "Sundararajan"),
        Method("gradcam", "class", "attributions", "class activation map", "Selvaraju 2017"),
        Method("guided-gradcam", "class", "attributions", "Grad-CAM x guided", "Selvaraju 2017"),
        Method("grabcut", "class", "masks", "GrabCut on saliency", "Rother 2004, OpenCV"),
        Method("class", "synthesis", "images", "class visualisation", "Simonyan 2014"),
        Method("invert", "synthesis", "images", "feature inversion", "Mahendran 2015"),
        Method("dream", "synthesis", "images", "DeepDream", "Mordvintsev 2015"),
        Method("texture", "synthesis", "images", "Gram texture synthesis", "Gatys 2015"),
        Method("style", "synthesis", "images", "style transfer", "Gatys 2016"),
        Method("fgsm", "adversarial", "images", "fast gradient sign", "Goodfellow 2015"),
        Method("pgd", "adversarial", "images", "projected gradient", "Madry 2018"),
    ]
}


def _name(names: list[str] | None, k: int) -> str | None:
    return names[k] if names is not None and 0 <= k < len(names) else None


def _class_meta(model: ExplainModel, target: int, probs: np.ndarray) -> dict[str, Any]:
    from .classes import class_names

    names = class_names(model, len(probs))
    pred = int(np.argmax(probs))
    return {
        "target_class": int(target),
        "target_name": _name(names, int(target)),
        "target_probability": float(probs[int(target)]),
        "predicted_class": pred,
        "predicted_name": _name(names, pred),
        "predicted_probability": float(probs[pred]),
    }


def _label(model: ExplainModel, k: int) -> str:
    from .classes import class_names

    name = _name(class_names(model), k)
    return f"{k} {name}" if name is not None and name != str(k) else str(k)


def iter_explain_class(
    model: ExplainModel, image: Any, method: str, target: int | None = None, **options: Any
) -> Generator[tuple[int, int], None, Explanation]:
    """`explain_class` as a generator of ``(done, total)`` (see there)."""
    from .attribution import prepare_image
    from .classes import CLASS_METHODS, iter_class_attribution

    if method not in CLASS_METHODS:
        raise KernelSpecError(f"method must be one of {', '.join(CLASS_METHODS)}, got {method!r}")
    pixels, notes = prepare_image(image, model)
    res = yield from iter_class_attribution(model, pixels[None], method, target, **options)
    t = int(res["targets"][0])
    meta = {
        **model.describe(),
        "method": method,
        "layer": res["parameters"].get("layer"),
        **_class_meta(model, t, res["probabilities"][0]),
        "parameters": {**res["parameters"], "image": notes},
        "caveats": model.caveats + res["caveats"],
    }
    return Explanation(
        method=method,
        layer=res["parameters"].get("layer") or "class",
        filters=[t],
        images=None,
        attributions=res["attributions"],
        image=pixels,
        meta=meta,
        masks=res["masks"],
        labels=[_label(model, t)],
        tiles=_mask_tiles(pixels, res["masks"]) if res["masks"] is not None else None,
    )


def explain_class(
    model: ExplainModel,
    image: Any,
    method: str,
    target: int | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
    **options: Any,
) -> Explanation:
    """Explain class `target` (default: the predicted class) on one image.

    Parameters
    ----------
    image : (H, W[, C]) array_like
        See `attribution.prepare_image`.
    method : str
        One of `classes.CLASS_METHODS`.
    **options
        Passed to `classes.iter_class_attribution` (layer, window, window_stride, ...).

    Returns
    -------
    Explanation
        ``attributions`` (1, C, H, W) or (1, 1, H, W) for Grad-CAM; ``masks`` (1, H, W) for
        GrabCut; ``meta`` with ``target_class``, ``predicted_class``,
        ``predicted_probability`` and their names where the weights know them.
    """
    return drive(iter_explain_class(model, image, method, target, **options), progress)


def _mask_tiles(pixels: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """The image dimmed outside the mask, the mask's border-free inside kept."""
    rgb = np.moveaxis(pixels, 0, -1)
    rgb = np.repeat(rgb, 3, axis=-1) if rgb.shape[-1] == 1 else rgb
    out = []
    for m in masks:
        tile = rgb * (0.25 + 0.75 * m[..., None])
        tile[..., 1] = np.where(m, tile[..., 1], np.minimum(tile[..., 1] + 0.15, 1.0))
        out.append(tile)
    return np.stack(out).astype(np.float32)


def iter_synthesize_images(
    model: ExplainModel, kind: str, **options: Any
) -> Generator[tuple[int, int], None, Explanation]:
    """`synthesize_images` as a generator of ``(done, steps)`` (see there)."""
    from .classes import predict
    from .synthesis import iter_synthesize

    res = yield from iter_synthesize(model, kind, **options)
    images = res["images"]
    params = res["parameters"]
    meta: dict[str, Any] = {
        **model.describe(),
        "method": kind,
        "layer": ",".join(params.get("layers", [])) or None,
        "parameters": params,
        "objective": [float(v) for v in res["objective"]],
        "start": res["start"],
        "end": res["end"],
        "caveats": list(model.caveats),
    }
    try:
        probs = predict(model, np.moveaxis(images, -1, 1))
    except KernelSpecError:
        probs = None
    if kind == "class":
        targets = params["targets"]
        labels = [_label(model, t) for t in targets]
        assert probs is not None
        per = [_class_meta(model, t, p) for t, p in zip(targets, probs, strict=True)]
        meta["classes"] = per
        meta.update(per[0] if len(per) == 1 else {"target_class": targets})
        meta["predicted_class"] = [c["predicted_class"] for c in per]
        meta["predicted_probability"] = [c["predicted_probability"] for c in per]
        filters = list(targets)
    else:
        labels = [kind]
        filters = [0]
        meta["target_class"] = None
        if probs is not None:
            pred = int(probs[0].argmax())
            meta.update(
                predicted_class=pred,
                predicted_probability=float(probs[0, pred]),
                predicted_name=_name(_class_names(model, probs.shape[1]), pred),
            )
    return Explanation(
        method=kind,
        layer=meta["layer"] or "logits",
        filters=filters,
        images=images,
        attributions=None,
        image=None,
        meta=meta,
        labels=labels,
    )


def _class_names(model: ExplainModel, n: int) -> list[str] | None:
    from .classes import class_names

    return class_names(model, n)


def synthesize_images(
    model: ExplainModel,
    kind: str,
    *,
    progress: Callable[[int, int], None] | None = None,
    **options: Any,
) -> Explanation:
    """Images made by one objective (`synthesis.iter_synthesize`'s options).

    Returns
    -------
    Explanation
        ``images`` (K, H, W, C) in [0, 1]; ``meta`` with the objective's settings, the
        ``start`` and ``end`` measurements, and the predicted class of each image.
    """
    return drive(iter_synthesize_images(model, kind, **options), progress)


def iter_adversarial_example(
    model: ExplainModel,
    image: Any,
    target: int,
    epsilon: float,
    method: str = "pgd",
    **options: Any,
) -> Generator[tuple[int, int], None, Explanation]:
    """`adversarial_example` as a generator of ``(done, steps)`` (see there)."""
    from .adversarial import iter_adversarial
    from .attribution import prepare_image
    from .classes import n_outputs

    pixels, notes = prepare_image(image, model)
    res = yield from iter_adversarial(model, pixels[None], target, epsilon, method, **options)
    adv = res["images"][0]
    delta = adv - pixels
    eps = float(res["parameters"]["epsilon"])
    names = _class_names(model, n_outputs(model))
    before, after = int(res["predicted_before"][0]), int(res["predicted_after"][0])
    fooled = bool(res["fooled"][0])
    caveats = list(model.caveats)
    if not fooled:
        caveats.append(
            f"{method.upper()} did not make the network say class {int(target)} within an "
            f"L-infinity budget of {eps:g}: it still says {before if before == after else after}"
            f" (target probability {float(res['target_probability_after'][0]):.3f}); try "
            "a larger budget" + (" or PGD" if method == "fgsm" else "")
        )
    meta = {
        **model.describe(),
        "method": method,
        "layer": None,
        "target_class": int(target),
        "target_name": _name(names, int(target)),
        "predicted_class": before,
        "predicted_name": _name(names, before),
        "predicted_probability": float(res["probability_before"][0]),
        "predicted_class_after": after,
        "predicted_name_after": _name(names, after),
        "probability_after": float(res["probability_after"][0]),
        "target_probability_after": float(res["target_probability_after"][0]),
        "fooled": fooled,
        "epsilon": eps,
        "epsilon_used": float(res["epsilon_used"][0]),
        "steps_used": int(res["steps_used"][0]),
        "parameters": {**res["parameters"], "image": notes},
        "caveats": caveats,
    }
    rgb = np.moveaxis(adv, 0, -1)
    original = np.moveaxis(pixels, 0, -1)
    shown = np.moveaxis(delta, 0, -1).sum(axis=-1) if delta.shape[0] > 1 else delta[0]
    tiles = [original, rgb]
    tiles = [np.repeat(t, 3, axis=-1) if t.shape[-1] == 1 else t for t in tiles]
    tiles.append(diverging(shown, limit=eps * delta.shape[0]))
    return Explanation(
        method=method,
        layer="input",
        filters=[int(target)],
        images=rgb[None].astype(np.float32),
        attributions=None,
        image=None,
        meta=meta,
        labels=[
            f"before: {_label(model, before)}",
            f"after: {_label(model, after)}",
            f"perturbation x{1 / eps:.3g}",
        ],
        arrays={
            "original": original[None].astype(np.float32),
            "perturbation": np.moveaxis(delta, 0, -1)[None].astype(np.float32),
        },
        tiles=np.stack(tiles).astype(np.float32),
    )


def adversarial_example(
    model: ExplainModel,
    image: Any,
    target: int,
    epsilon: float,
    method: str = "pgd",
    *,
    progress: Callable[[int, int], None] | None = None,
    **options: Any,
) -> Explanation:
    """An adversarial example of one image towards class `target` (FGSM or PGD).

    Returns
    -------
    Explanation
        ``images`` (1, H, W, C) the adversarial image; ``arrays["original"]`` and
        ``arrays["perturbation"]`` (1, H, W, C); ``meta`` with ``epsilon_used``,
        ``predicted_class`` / ``predicted_probability`` before and ``predicted_class_after``
        / ``probability_after``, ``fooled``; a caveat says when the method failed.
    """
    return drive(
        iter_adversarial_example(model, image, target, epsilon, method, **options), progress
    )
