"""``kernelspec models``: the models that can be analysed."""

from __future__ import annotations

import argparse
import sys

HELP = "list the models that can be analysed"


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--all",
        action="store_true",
        help="add every torchvision model and every pretrained timm model (as timm:NAME), "
        "in groups",
    )


def run(args: argparse.Namespace) -> int:
    from ..sources.models import SEED_MODELS, available_models

    names = available_models(include_all=args.all)
    for name in names[: len(SEED_MODELS)]:
        sys.stdout.write(f"{name:<22}{SEED_MODELS.get(name, '')}".rstrip() + "\n")
    if args.all:
        sys.stdout.write("# torchvision: the other classification models\n")
        sys.stdout.writelines(f"{name}\n" for name in names[len(SEED_MODELS) :])
        _write_timm()
    return 0


def _write_timm() -> None:
    from ..base.errors import KernelSpecError
    from ..sources.timm_models import list_pretrained

    try:
        names = list_pretrained()
    except KernelSpecError as exc:
        sys.stdout.write(f"# timm: not available ({exc})\n")
        return
    sys.stdout.write(
        "# timm: pretrained models, weights read from the Hugging Face Hub "
        "(only the first layer's bytes)\n"
    )
    sys.stdout.writelines(f"timm:{name}\n" for name in names)
