"""``kernelspec models``: the models that can be analysed."""

from __future__ import annotations

import argparse
import sys

HELP = "list the models that can be analysed"


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--all", action="store_true", help="add every supported torchvision model")


def run(args: argparse.Namespace) -> int:
    from ..sources.models import SEED_MODELS, available_models

    for name in available_models(include_all=args.all):
        sys.stdout.write(f"{name:<22}{SEED_MODELS.get(name, '')}".rstrip() + "\n")
    return 0
