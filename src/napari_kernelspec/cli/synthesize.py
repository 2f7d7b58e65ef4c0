"""``kernelspec synthesize``: images made by the network (class, DeepDream, inversion, ...)."""

from __future__ import annotations

import argparse
import sys

from ._common import add_model_output_options, whole_number

HELP = "make images with the network: class visualisation, DeepDream, inversion, texture, style"
DESCRIPTION = (
    "Ascend one objective on an image: class:N[,M...] (the image of a class), dream:LAYER "
    "(DeepDream from --image), invert:LAYER (reconstruct --image from its features), "
    "texture:LAYER[,LAYER...] (a new image with the Gram matrices of --image), style (the "
    "content of --image in the style of --style-image). Writes an .npz (images (K,H,W,C) in "
    "[0, 1], meta JSON) and optionally a PNG."
)

KINDS = ("class", "dream", "invert", "texture", "style")


def objective_arg(text: str) -> tuple[str, list[str]]:
    """``KIND[:ARGS]`` -> (kind, comma-separated arguments)."""
    kind, _, rest = text.strip().partition(":")
    kind = kind.strip().lower()
    if kind not in KINDS:
        raise argparse.ArgumentTypeError(
            "--objective must be class:N, dream:LAYER, invert:LAYER, texture:LAYER[,LAYER...] "
            f"or style, got {text!r}"
        )
    values = [v.strip() for v in rest.split(",") if v.strip()]
    if kind in ("class", "dream", "invert", "texture") and not values:
        what = "N" if kind == "class" else "LAYER"
        raise argparse.ArgumentTypeError(f"--objective {kind} needs {kind}:{what}")
    if kind == "class":
        try:
            [int(v) for v in values]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"--objective class:N needs class indices, got {rest!r}"
            ) from None
    return kind, values


def add_parser(parser: argparse.ArgumentParser) -> None:

    parser.add_argument(
        "source", metavar="SOURCE", help="a model name or a state dict with --arch"
    )
    parser.add_argument(
        "--objective",
        type=objective_arg,
        required=True,
        metavar="KIND[:ARGS]",
        help="class:N[,M] | dream:LAYER | invert:LAYER | texture:LAYER[,LAYER] | style",
    )
    parser.add_argument(
        "--layers",
        metavar="CONTENT,STYLE...",
        help="style: the content layer, then the style layers (default: the middle conv, "
        "then the first five convs)",
    )
    parser.add_argument("--image", metavar="PATH", help="dream / invert / texture / style")
    parser.add_argument("--style-image", metavar="PATH", help="style: the style image")
    parser.add_argument(
        "--steps", type=whole_number("--steps"), help="Adam steps (default per objective)"
    )
    parser.add_argument(
        "--size",
        type=whole_number("--size", 8),
        default=128,
        help="image side in px (class), or the longer side --image is resized to (default "
        "128; models with a fixed input size use theirs)",
    )
    parser.add_argument("--seed", type=whole_number("--seed", 0), default=0)
    add_model_output_options(parser)


def load_image(path: str, model, size: int):  # type: ignore[no-untyped-def]
    """`path` as the model's (C, H, W) input, the longer side at most `size` px."""
    import numpy as np
    from PIL import Image

    from ..imaging.explain.attribution import prepare_image
    from ..imaging.explain.result import read_image

    arr = read_image(path)
    h, w = arr.shape[:2]
    if model.input_size is None and max(h, w) > size:
        scale = size / max(h, w)
        img = Image.fromarray(arr).resize(
            (max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS
        )
        arr = np.asarray(img)
    return prepare_image(arr, model)[0]


def run(args: argparse.Namespace) -> int:
    from ..base.errors import KernelSpecError
    from ..imaging.explain.methods import synthesize_images
    from ..imaging.explain.model import explain_model
    from ..imaging.explain.result import check_output_paths, save_files
    from ..imaging.explain.synthesis import style_layers
    from ._common import progress_bar

    check_output_paths(args.out, args.png)
    kind, values = args.objective
    if kind != "class" and not args.image:
        raise KernelSpecError(f"--objective {kind} starts from an image: give --image")
    if kind == "style" and not args.style_image:
        raise KernelSpecError("--objective style needs --style-image")
    if args.layers and kind != "style":
        raise KernelSpecError("--layers is for --objective style; give other layers as KIND:LAYER")
    model = explain_model(args.source, args.weights, arch=args.arch, device=args.device)
    options: dict = {"seed": args.seed, "steps": args.steps, "size": args.size}
    if kind == "class":
        options["target"] = [int(v) for v in values]
    else:
        options["image"] = load_image(args.image, model, args.size)
        if kind == "style":
            options["style_image"] = load_image(args.style_image, model, args.size)
            if args.layers:
                layers = [v.strip() for v in args.layers.split(",") if v.strip()]
            else:
                layers = [model.resolve_layer("middle"), *style_layers(model)]
            if len(layers) < 2:
                raise KernelSpecError("--layers needs a content layer and a style layer")
            options["layers"] = layers
        else:
            options["layers"] = values
    with progress_bar(f"kernelspec synthesize {kind}", "step") as bar:
        result = synthesize_images(model, kind, progress=bar, **options)
    result.meta["parameters"]["image_file"] = args.image
    result.meta["parameters"]["style_image_file"] = args.style_image
    out, png = save_files(result, args.out, args.png)
    lines = [f"{model.name} ({model.weights_label}): {kind} images written to {out}"]
    meta = result.meta
    if kind == "class":
        for c in meta["classes"]:
            lines.append(
                f"class {c['target_class']}: probability {c['target_probability']:.3f} "
                f"(predicted {c['predicted_class']})"
            )
    for key, value in meta["end"].items():
        was = meta["start"].get(key)
        lines.append(f"{key}: " + (f"{was:.4g} -> " if was is not None else "") + f"{value:.4g}")
    if png is not None:
        lines.append(f"mosaic written to {png}")
    lines += [f"note: {c}" for c in meta["caveats"]]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0
