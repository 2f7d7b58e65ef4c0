"""``kernelspec adversarial``: the smallest push that makes the network say another class."""

from __future__ import annotations

import argparse
import sys

from ._common import add_model_output_options, whole_number

HELP = "make an adversarial example (FGSM, PGD) towards a class"
DESCRIPTION = (
    "Push --image towards class --class within an L-infinity budget --epsilon (pixels in "
    "[0, 1]): FGSM takes one step, PGD small steps and stops once the class wins. Writes an "
    ".npz (images: the adversarial image (1,H,W,C); original; perturbation; meta JSON with "
    "epsilon_used, the class and probability before and after) and optionally a PNG of the "
    "image, the adversarial image and the perturbation magnified."
)


def epsilon_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--epsilon must be a number, got {text!r}") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"--epsilon must be in (0, 1] (pixel units), got {text}")
    return value


def add_parser(parser: argparse.ArgumentParser) -> None:
    from ..imaging.explain.adversarial import ADVERSARIAL_METHODS, PGD_STEPS

    parser.add_argument(
        "source", metavar="SOURCE", help="a model name or a state dict with --arch"
    )
    parser.add_argument("--image", required=True, metavar="PATH", help="the image to perturb")
    parser.add_argument(
        "--class", dest="target", required=True, type=whole_number("--class", 0), metavar="N"
    )
    parser.add_argument("--epsilon", required=True, type=epsilon_arg, metavar="E")
    parser.add_argument("--method", choices=ADVERSARIAL_METHODS, default="pgd")
    parser.add_argument(
        "--steps",
        type=whole_number("--steps"),
        default=PGD_STEPS,
        help=f"PGD: most steps (default {PGD_STEPS})",
    )
    add_model_output_options(parser)


def run(args: argparse.Namespace) -> int:
    from ..imaging.explain.methods import adversarial_example
    from ..imaging.explain.model import explain_model
    from ..imaging.explain.result import check_output_paths, read_image, save_files

    check_output_paths(args.out, args.png)
    image = read_image(args.image)
    model = explain_model(args.source, args.weights, arch=args.arch, device=args.device)
    result = adversarial_example(
        model, image, args.target, args.epsilon, args.method, steps=args.steps
    )
    result.meta["parameters"]["image_file"] = args.image
    out, png = save_files(result, args.out, args.png)
    m = result.meta
    lines = [
        f"{model.name} ({model.weights_label}): {args.method} towards class "
        f"{m['target_class']} written to {out}",
        f"before: class {m['predicted_class']} with probability {m['predicted_probability']:.3f}",
        f"after: class {m['predicted_class_after']} with probability {m['probability_after']:.3f}"
        f" (L-infinity {m['epsilon_used']:.4g} of {m['epsilon']:g}, {m['steps_used']} steps)",
        "fooled: the network now says the target class"
        if m["fooled"]
        else f"not fooled: {args.method.upper()} failed within the budget",
    ]
    if png is not None:
        lines.append(f"mosaic written to {png}")
    lines += [f"note: {c}" for c in m["caveats"]]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0
