"""``kernelspec patches``: every filter's top-activating patches over a set of images."""

from __future__ import annotations

import argparse
import json
import sys

from ._common import whole_number, write_json
from .maps import add_source_options

HELP = "each filter's top-activating image patches over a set of images"
DESCRIPTION = (
    "For every filter of one convolution layer, the K image patches (receptive fields) with "
    "the highest response over the images, at K different places."
)


def add_parser(parser: argparse.ArgumentParser) -> None:
    add_source_options(parser)
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    parser.add_argument(
        "--k",
        type=whole_number("k", most=10_000),
        default=9,
        help="patches per filter (default 9, at most 10,000)",
    )
    parser.add_argument(
        "--json", metavar="PATH", help="write the patches as JSON to PATH; '-' to stdout"
    )


def run(args: argparse.Namespace) -> int:
    from ..base.text import printable
    from ..imaging import top_patches

    found = top_patches(
        args.source,
        args.images,
        args.layer,
        k=args.k,
        weights=args.weights,
        normalize=args.normalize,
        stride=args.stride,
        padding=args.padding,
        dilation=args.dilation,
        arch=args.arch,
    )
    document = found.to_dict(list(args.images))
    if args.json == "-":
        json.dump(document, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    if args.json:
        write_json(document, args.json)
    name = f"{printable(found.bank.display_name)} {printable(found.bank.layer)}"
    lines = [f"{name}: top {found.k} patches per filter"]
    for item in document["filters"]:
        best = item["patches"][0] if item["patches"] else None
        if best is None:
            lines.append(f"filter {item['index']}: none")
            continue
        y0, x0, y1, x1 = best["box"]
        lines.append(
            f"filter {item['index']}: best {best['activation']:.3g} in "
            f"{printable(str(best['image']))} rows {y0}:{y1} cols {x0}:{x1}"
        )
    if args.json:
        lines.append(f"all patches written to {args.json}")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0
