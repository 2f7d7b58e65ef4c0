"""``kernelspec maps``: one layer's feature maps of an image, saved as ``.npz``."""

from __future__ import annotations

import argparse
import sys

from ._common import add_arch_option, add_weights_option

HELP = "feature maps of an image through one conv layer (saved as .npz)"
DESCRIPTION = (
    "Run an image through one convolution layer and save its feature maps with their "
    "geometry: maps (N, H', W') float32, scale, translate and receptive_field (image pixels; "
    "map pixel (i, j) is centred at translate + (i, j) * scale) and a JSON string meta."
)


#: Largest stride, padding or dilation accepted (a real layer's are a few pixels).
MAX_GEOMETRY = 4096


def pair_arg(minimum: int):
    """``S`` or ``R,C``: whole numbers in [`minimum`, `MAX_GEOMETRY`]."""

    def parse(text: str) -> tuple[int, int]:
        parts = text.split(",")
        try:
            values = tuple(int(p) for p in parts)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a whole number or ROWS,COLS, got {text!r}"
            ) from None
        if len(values) not in (1, 2) or min(values) < minimum or max(values) > MAX_GEOMETRY:
            raise argparse.ArgumentTypeError(
                f"expected one or two whole numbers >= {minimum} (at most {MAX_GEOMETRY}), "
                f"got {text!r}"
            )
        return (values[0], values[-1])

    return parse


def add_source_options(parser: argparse.ArgumentParser) -> None:
    """SOURCE, --layer, --weights, --normalize, --stride, --padding and --dilation."""
    from ..imaging.images import NORMALIZE

    parser.add_argument(
        "source",
        metavar="SOURCE",
        help="a model name (see 'kernelspec models') or a weights file: .pth .pt .ckpt "
        ".safetensors .npy .npz",
    )
    parser.add_argument(
        "--layer",
        help="a convolution by module name (default: the first); a deeper layer runs inside "
        "its network",
    )
    add_weights_option(parser)
    parser.add_argument(
        "--normalize",
        choices=NORMALIZE,
        default="auto",
        help="auto (default): the weights' own preprocessing (ImageNet mean/std for "
        "torchvision models), [0, 1] otherwise; none: the image as given (uint8 / 255)",
    )
    parser.add_argument(
        "--stride", type=pair_arg(1), metavar="S", help="stride of a file's layer (S or R,C)"
    )
    parser.add_argument(
        "--padding", type=pair_arg(0), metavar="P", help="zero padding of a file's layer"
    )
    parser.add_argument(
        "--dilation", type=pair_arg(1), metavar="D", help="dilation of a file's layer"
    )
    add_arch_option(parser)


def add_parser(parser: argparse.ArgumentParser) -> None:
    add_source_options(parser)
    parser.add_argument("image", metavar="IMAGE", help="an image file (PNG, JPEG, TIFF, ...)")
    parser.add_argument("--no-relu", action="store_true", help="keep the signed response")
    parser.add_argument("--out", required=True, metavar="PATH", help="the .npz file to write")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..base.atomic import atomic_write
    from ..base.errors import KernelSpecError
    from ..base.text import printable
    from ..imaging import feature_maps, read_image

    if not args.out.lower().endswith(".npz"):
        raise KernelSpecError(f"--out must be an .npz file, got {args.out!r}")
    result = feature_maps(
        args.source,
        read_image(args.image),
        args.layer,
        weights=args.weights,
        relu=not args.no_relu,
        normalize=args.normalize,
        stride=args.stride,
        padding=args.padding,
        dilation=args.dilation,
        arch=args.arch,
    )
    result.meta["image"] = args.image
    try:
        with atomic_write(args.out, "wb") as fh:
            np.savez(fh, **result.to_npz_dict())
    except OSError as exc:
        raise KernelSpecError(
            f"cannot write {args.out}: {exc.strerror or exc}; pick a writable path"
        ) from None
    n, h, w = result.maps.shape
    sy, sx = result.scale
    ty, tx = result.translate
    ry, rx = result.receptive_field
    name = f"{printable(result.bank.display_name)} {printable(result.bank.layer)}"
    sys.stdout.write(
        f"{name}: {n} maps of {h}x{w} "
        f"(scale {sy:g},{sx:g}; translate {ty:g},{tx:g}; receptive field {ry}x{rx} px; "
        f"{result.meta['normalisation']}) written to {printable(args.out)}\n"
    )
    return 0
