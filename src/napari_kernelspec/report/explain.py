"""The report's "what drives the filters" part: maximising images of two layers per model.

`kernelspec report --explain LAYER` adds, to each model's section, the images that maximise
the first 16 filters of the analysed (first) layer and of LAYER (a module name, or ``middle``
/ ``last``: that convolution of each model, counted in registration order).

For trained classifiers it adds "what drives the class": on a sample image (scikit-image's
photo of Chelsea for RGB models, a held-out digit for the digits LeNet5), the predicted
class, its Grad-CAM (last convolution) and gradient saliency, and the class visualisation
of that class (its logit ascended, L2-regularised, at the report's size and steps).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..analysis import views
from . import images

if TYPE_CHECKING:
    from ..analysis.pipeline import AnalysisResult
    from ..base.bank import KernelBank

__all__ = ["DEFAULT_SIZE", "DEFAULT_STEPS", "N_FILTERS", "explain_sections"]

#: Filters shown per layer.
N_FILTERS = 16
#: Report defaults: smaller than `kernelspec explain`'s (128 px, 256 steps) so that a report
#: of the eight seed models stays minutes, not hours, on a CPU.
DEFAULT_STEPS = 96
DEFAULT_SIZE = 96
_TILE_PX = 96


def _source_of(bank: KernelBank) -> tuple[str, str]:
    """(what to build, weights) for a bank: its model name, or its file."""
    if bank.source in ("checkpoint", "array"):
        return str(bank.provenance.get("file", bank.model)), "auto"
    weights = "random" if bank.source == "random" else "pretrained"
    return bank.model, weights


def _layer_section(model: Any, layer: str, steps: int, size: int, seed: int) -> dict[str, Any]:
    from ..imaging.explain.maximize import maximize

    n = min(N_FILTERS, model.n_filters(layer))
    res = maximize(model, layer, range(n), steps=steps, size=size, seed=seed)
    tiles = res["images"]
    if tiles.shape[-1] == 1:
        tiles = np.repeat(tiles, 3, axis=-1)
    factor = images.upscale_factor(tiles.shape[1], _TILE_PX)
    picture = views.mosaic(images.upscale(tiles, factor, axes=(1, 2)), ncols=8, gap=2, fill=1.0)
    h, w = picture.shape[:2]
    alt = f"{model.name} {layer}: images maximising filters 0-{n - 1}"
    return {
        "layer": layer,
        "n": n,
        "uri": images.png_data_uri(picture),
        "width": w,
        "height": h,
        "aspect": f"{w / h:.5f}",
        "alt": alt,
    }


def _sample_image(model: Any) -> tuple[np.ndarray, str]:
    """(C, H, W) sample input in [0, 1] and what it is."""
    if model.channels == 1:
        from ..sources.digits import load_digits_32

        _, _, x, y = load_digits_32()
        return x[0], f"a held-out digit ({int(y[0])})"
    from PIL import Image
    from skimage.data import chelsea

    img = Image.fromarray(chelsea())
    img = img.resize((round(img.width * 224 / img.height), 224), Image.Resampling.LANCZOS)
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return np.moveaxis(arr, -1, 0), "scikit-image's photo of Chelsea the cat"


def _class_section(model: Any, steps: int, size: int, seed: int) -> dict[str, Any] | None:
    """Grad-CAM, gradient saliency and the class visualisation of the predicted class."""
    from ..base.errors import KernelSpecError
    from ..imaging.explain.classes import class_attribution
    from ..imaging.explain.result import diverging
    from ..imaging.explain.synthesis import synthesize

    if not model.is_trained:
        return None
    pixels, what = _sample_image(model)
    try:
        cam = class_attribution(model, pixels[None], "gradcam")
    except KernelSpecError:  # not a classifier (a one-layer weights file)
        return None
    target = int(cam["targets"][0])
    prob = float(cam["probabilities"][0, target])
    grad = class_attribution(model, pixels[None], "gradient", target)["attributions"][0]
    vis = synthesize(model, "class", target=[target], steps=steps, size=size, seed=seed)
    from ..imaging.explain.classes import class_names

    names = class_names(model)
    name = names[target] if names else str(target)
    rgb = np.moveaxis(pixels, 0, -1)
    rgb = np.repeat(rgb, 3, axis=-1) if rgb.shape[-1] == 1 else rgb
    heat = cam["attributions"][0, 0]
    heat = heat / heat.max() if heat.max() > 0 else heat
    overlay = 0.5 * rgb + 0.5 * np.stack([heat, 0.2 * heat, 1 - heat], axis=-1)
    tiles = [rgb, overlay, diverging(grad.sum(axis=0))]
    picture_vis = vis["images"][0]
    if picture_vis.shape[-1] == 1:
        picture_vis = np.repeat(picture_vis, 3, axis=-1)
    h = rgb.shape[0]
    factor = images.upscale_factor(h, 2 * _TILE_PX)
    row = views.mosaic(
        np.stack([images.upscale(t, factor) for t in tiles]).astype(np.float32),
        ncols=3,
        gap=2,
        fill=1.0,
    )
    vis_factor = images.upscale_factor(picture_vis.shape[0], 2 * _TILE_PX)
    vis_img = images.upscale(picture_vis, vis_factor)
    out = {"name": name, "target": target, "probability": f"{prob:.3f}", "what": what}
    for key, pic, alt in [
        ("attribution", row, f"{model.name}: the sample, Grad-CAM and gradient of {name}"),
        ("visualisation", vis_img, f"{model.name}: class visualisation of {name}"),
    ]:
        ph, pw = pic.shape[:2]
        out[key] = {
            "uri": images.png_data_uri(np.clip(pic, 0, 1)),
            "width": pw,
            "height": ph,
            "aspect": f"{pw / ph:.5f}",
            "alt": alt,
        }
    return out


def explain_sections(
    results: Sequence[AnalysisResult],
    layer: str,
    *,
    steps: int = DEFAULT_STEPS,
    size: int = DEFAULT_SIZE,
    seed: int = 0,
    device: str = "auto",
    on_model: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """One context per result (same order) for the report's explain partial.

    Parameters
    ----------
    results : sequence of AnalysisResult
    layer : str
        A convolution's module name, ``"middle"`` or ``"last"``.
    steps, size, seed, device
        Passed to `maximize` / `explain_model`.
    on_model : callable, optional
        Called with each model's display name before its images are made (progress).

    Returns
    -------
    list of dict
        ``layers`` (the first layer's and `layer`'s mosaics, as image contexts), ``classes``
        (trained classifiers: the predicted class of a sample image, its Grad-CAM, gradient
        and class visualisation; else None), ``steps``, ``size``, ``caveats``.

    Raises
    ------
    KernelSpecError
        If `layer` is not a convolution of one of the models (the valid names are listed).
    """
    from ..imaging.explain.model import explain_model

    out = []
    for result in results:
        bank = result.bank
        if on_model is not None:
            on_model(bank.display_name)
        source, weights = _source_of(bank)
        with warnings.catch_warnings():  # the load already warned about untrained weights
            warnings.simplefilter("ignore")
            arch = bank.provenance.get("arch") if weights == "auto" else None
            built = Path(source) if weights == "auto" else source
            model = explain_model(built, weights, arch=arch if isinstance(arch, str) else None)
        first = bank.layer if bank.layer in model.conv_names() else model.resolve_layer("first")
        caveats = list(model.caveats)
        if model.one_layer and layer.strip() in ("middle", "last"):
            # Said in the section, never silently replaced by the first layer.
            chosen = first
            caveats.append(
                f"{bank.display_name} holds one convolution (no network): it has no {layer} "
                "layer; only its first is shown (give the file's architecture for more)"
            )
        else:
            chosen = model.resolve_layer(layer)
        layers = [first] + ([chosen] if chosen != first else [])
        out.append(
            {
                "layers": [_layer_section(model, name, steps, size, seed) for name in layers],
                "classes": _class_section(model, steps, size, seed),
                "steps": steps,
                "size": size,
                "trained": model.is_trained,
                "caveats": caveats,
            }
        )
    return out
