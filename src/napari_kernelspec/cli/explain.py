"""``kernelspec explain``: what input drives a filter of any conv layer."""

from __future__ import annotations

import argparse
import sys

from ._common import add_weights_option, whole_number

HELP = "show what drives filters of any conv layer (maximising images, saliency)"
DESCRIPTION = (
    "Explain filters of one convolution layer: 'maximize' synthesises the image that most "
    "excites each filter; 'deconvnet', 'guided', 'gradient' and 'occlusion' show which pixels "
    "of --image drive it. Writes an .npz (images (F,H,W,C) or attributions (F,C,H,W), "
    "filters, meta JSON) and optionally a PNG mosaic."
)


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
    from ..imaging.explain.model import DEVICES

    parser.add_argument(
        "source",
        metavar="SOURCE",
        help="a model name (see 'kernelspec models --all'), a state dict with --arch, or a "
        "weights file with one conv (.npy .npz .pth .safetensors: explained as conv + ReLU)",
    )
    parser.add_argument(
        "--layer",
        default="first",
        help="conv layer by module name, or first (default) / middle / last",
    )
    parser.add_argument(
        "--filters",
        help="indices and ranges, e.g. 0,3,5-9 (default: the first 16, or all if fewer)",
    )
    parser.add_argument("--method", choices=METHODS, default="maximize")
    parser.add_argument("--image", metavar="PATH", help="the image (deconvnet, guided, ...)")
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
    parser.add_argument("--device", choices=DEVICES, default="auto")
    add_weights_option(parser)
    parser.add_argument(
        "--arch", metavar="NAME", help="the torchvision architecture of a state-dict SOURCE"
    )
    parser.add_argument("--out", required=True, metavar="PATH", help="the .npz to write")
    parser.add_argument("--png", metavar="PATH", help="also write a PNG mosaic")


def run(args: argparse.Namespace) -> int:
    from ..base.errors import KernelSpecError
    from ..imaging.explain.model import explain_model
    from ..imaging.explain.result import explain, read_image, save_npz, save_png

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
    filters = args.filters
    if filters is None:
        filters = list(range(min(16, model.n_filters(model.resolve_layer(args.layer)))))
    result = explain(model, args.layer, filters, args.method, image=image, **options)
    result.meta["parameters"]["image_file"] = args.image if image is not None else None
    out = save_npz(result, args.out)
    lines = [
        f"{model.name} ({model.weights_label}) {result.layer}: {args.method} of "
        f"{len(result.filters)} filters written to {out}"
    ]
    if args.png:
        lines.append(f"mosaic written to {save_png(result, args.png)}")
    lines += [f"note: {c}" for c in result.meta["caveats"]]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0
