"""``kernelspec explain``: what input drives a filter of any conv layer."""

from __future__ import annotations

import argparse
import sys

from ._common import add_model_output_options, whole_number

HELP = "show what drives filters or a class score (maximising images, saliency, Grad-CAM)"
DESCRIPTION = (
    "Explain filters of one convolution layer: 'maximize' synthesises the image that most "
    "excites each filter; 'deconvnet', 'guided', 'gradient' and 'occlusion' show which pixels "
    "of --image drive it. With --class (or the class-only methods 'gradcam', 'guided-gradcam', "
    "'smoothgrad', 'integrated-gradients', 'grabcut') they explain a class score instead. "
    "Writes an .npz (images (F,H,W,C), attributions (K,C,H,W), masks (K,H,W), meta JSON) and "
    "optionally a PNG mosaic."
)

#: Methods that only explain a class score.
CLASS_ONLY = ("smoothgrad", "integrated-gradients", "gradcam", "guided-gradcam", "grabcut")


def class_arg(text: str) -> int | None:
    """``--class``: a class index, or ``predicted``."""
    if text.strip().lower() in ("predicted", "pred", "auto"):
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--class must be a class index or 'predicted', got {text!r}"
        ) from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"--class must be 0 or more, got {value}")
    return value


def _pair(text: str) -> tuple[int, int] | str:
    if text.strip().lower() in ("centre", "center"):
        return "centre"
    try:
        y, x = (int(v) for v in text.split(","))
        if max(abs(y), abs(x)) > 2**31:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--at must be Y,X (two whole numbers) or 'centre', got {text!r}"
        ) from None
    return y, x


def add_parser(parser: argparse.ArgumentParser) -> None:
    from ..imaging.explain.attribution import METHODS
    from ..imaging.explain.maximize import DEFAULT_SIZE, DEFAULT_STEPS

    parser.add_argument(
        "source",
        metavar="SOURCE",
        help="a model name (see 'kernelspec models --all'), a state dict with --arch, or a "
        "weights file with one conv (.npy .npz .pth .safetensors: explained as conv + ReLU)",
    )
    parser.add_argument(
        "--layer",
        help="conv layer by module name, or first / middle / last (default: first; for "
        "gradcam and guided-gradcam: last)",
    )
    parser.add_argument(
        "--filters",
        help="indices and ranges, e.g. 0,3,5-9 (default: the first 16, or all if fewer)",
    )
    parser.add_argument("--method", choices=METHODS + CLASS_ONLY, default="maximize")
    parser.add_argument("--image", metavar="PATH", help="the image (deconvnet, guided, ...)")
    parser.add_argument(
        "--class",
        dest="target",
        type=class_arg,
        default=False,
        metavar="N",
        help="explain class N's score (or 'predicted') instead of filters: gradient, "
        "occlusion, guided; the class-only methods default to the predicted class",
    )
    parser.add_argument(
        "--at",
        type=_pair,
        metavar="Y,X",
        help="one unit of the layer's map (map coordinates) or 'centre'; default the mean "
        "of the whole rectified map",
    )
    parser.add_argument(
        "--window",
        type=whole_number("--window", most=4096),
        default=8,
        help="occlusion square (px, default 8)",
    )
    parser.add_argument(
        "--window-stride",
        type=whole_number("--window-stride", most=4096),
        default=1,
        help="occlusion step (px, default 1)",
    )
    parser.add_argument(
        "--steps",
        type=whole_number("--steps", most=1_000_000),
        default=DEFAULT_STEPS,
        help=f"maximize: Adam steps (default {DEFAULT_STEPS})",
    )
    parser.add_argument(
        "--size",
        type=whole_number("--size", 8, 4096),
        default=DEFAULT_SIZE,
        help=f"maximize: image side in px (default {DEFAULT_SIZE})",
    )
    parser.add_argument(
        "--seed",
        type=whole_number("--seed", 0, 2**32 - 1),
        default=0,
        help="maximize: random seed (0 to 2**32 - 1)",
    )
    add_model_output_options(parser)


def _class_run(args: argparse.Namespace) -> int:
    from ..base.errors import KernelSpecError
    from ..imaging.explain.methods import explain_class
    from ..imaging.explain.model import explain_model
    from ..imaging.explain.result import read_image, save_files
    from ._common import progress_bar

    if args.method == "maximize":
        raise KernelSpecError(
            "--class explains a class score on an image: use --method gradient, occlusion, "
            "guided, smoothgrad, integrated-gradients, gradcam, guided-gradcam or grabcut "
            "(for an image of a class: kernelspec synthesize --objective class:N)"
        )
    if args.method == "deconvnet":
        raise KernelSpecError("--method deconvnet explains filters only; leave out --class")
    if args.filters is not None or args.at is not None:
        raise KernelSpecError("--filters and --at are for filters; leave them out with --class")
    if not args.image:
        raise KernelSpecError(f"--method {args.method} explains a class on an image: give --image")
    image = read_image(args.image)
    model = explain_model(args.source, args.weights, arch=args.arch, device=args.device)
    options: dict = {"seed": args.seed}
    if args.method in ("gradcam", "guided-gradcam"):
        options["layer"] = args.layer
    elif args.layer is not None:
        raise KernelSpecError(f"--layer is for filters and Grad-CAM, not --method {args.method}")
    if args.method == "occlusion":  # Captum's bar counts the window positions
        options.update(window=args.window, window_stride=args.window_stride, show_progress=True)
    target = None if args.target is False else args.target
    with progress_bar(f"kernelspec explain {args.method}", "image") as bar:
        result = explain_class(model, image, args.method, target, progress=bar, **options)
    result.meta["parameters"]["image_file"] = args.image
    out, png = save_files(result, args.out, args.png)
    meta = result.meta

    def named(k: int, name: str | None) -> str:
        return f"{k} ({name})" if name and name != str(k) else str(k)

    lines = [
        f"{model.name} ({model.weights_label}): {args.method} of class "
        f"{named(meta['target_class'], meta['target_name'])} written to {out}",
        f"predicted: {named(meta['predicted_class'], meta['predicted_name'])} with "
        f"probability {meta['predicted_probability']:.3f}",
    ]
    if png is not None:
        lines.append(f"mosaic written to {png}")
    lines += [f"note: {c}" for c in meta["caveats"]]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def run(args: argparse.Namespace) -> int:
    from ..base.errors import KernelSpecError
    from ..imaging.explain.model import explain_model
    from ..imaging.explain.result import check_output_paths, explain, read_image, save_files
    from ._common import progress_bar

    check_output_paths(args.out, args.png)
    if args.target is not False or args.method in CLASS_ONLY:
        return _class_run(args)
    if args.method != "maximize" and not args.image:
        raise KernelSpecError(
            f"--method {args.method} explains a filter on an image: give --image"
        )
    image = read_image(args.image) if args.image and args.method != "maximize" else None
    model = explain_model(args.source, args.weights, arch=args.arch, device=args.device)
    options: dict = {"at": args.at}
    if args.method == "maximize":
        options.update(size=args.size, steps=args.steps, seed=args.seed)
    elif args.method == "occlusion":
        options.update(window=args.window, window_stride=args.window_stride)
    layer = args.layer or "first"
    filters = args.filters
    if filters is None:
        filters = list(range(min(16, model.n_filters(model.resolve_layer(layer)))))
    unit = "step" if args.method == "maximize" else "filter"
    with progress_bar(f"kernelspec explain {args.method}", unit) as bar:
        result = explain(model, layer, filters, args.method, image=image, progress=bar, **options)
    result.meta["parameters"]["image_file"] = args.image if image is not None else None
    out, png = save_files(result, args.out, args.png)
    lines = [
        f"{model.name} ({model.weights_label}) {result.layer}: {args.method} of "
        f"{len(result.filters)} filters written to {out}"
    ]
    if png is not None:
        lines.append(f"mosaic written to {png}")
    lines += [f"note: {c}" for c in result.meta["caveats"]]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0
