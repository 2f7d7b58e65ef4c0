"""What every ``kernelspec`` command shares: the parser class, option types and options."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

__all__ = [
    "EXIT_USAGE",
    "PROG",
    "Parser",
    "add_analysis_options",
    "add_arch_option",
    "add_cluster_options",
    "add_geometry_options",
    "add_model_output_options",
    "add_weights_option",
    "alpha_arg",
    "geometry",
    "geometry_arg",
    "min_samples_arg",
    "progress_bar",
    "quiet_dask_logs",
    "threshold_arg",
    "whole_number",
    "write_json",
]

PROG = "kernelspec"
EXIT_USAGE = 2


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line that points at --help."""

    def error(self, message: str) -> NoReturn:
        from ..base.text import printable

        text = f"{printable(message)} (see '{printable(self.prog)} --help')"
        self.exit(EXIT_USAGE, f"{PROG}: error: {text}\n")


def threshold_arg(text: str) -> float | str:
    """``--threshold``: a similarity in (0, 1], or ``auto`` (calibrated against chance)."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"threshold must be a number or 'auto', got {text!r}"
        ) from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(
            f"threshold {text} is outside (0, 1]; use a similarity such as 0.93, or 'auto'"
        )
    return value


def alpha_arg(text: str) -> float:
    """``--alpha``: the share of filters chance may cluster under ``--threshold auto``."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"alpha must be a number, got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(
            f"alpha {text} is outside (0, 1); use a share such as 0.05"
        )
    return value


def whole_number(name: str, least: int = 1, most: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number in [`least`, `most`], errors naming the option `name`.

    Bounded before anything is allocated from it (a count of 10**20 is refused here).
    """

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{name} must be a whole number, got {text!r}"
            ) from None
        if value < least:
            raise argparse.ArgumentTypeError(f"{name} is {value}; it must be at least {least}")
        if most is not None and value > most:
            raise argparse.ArgumentTypeError(f"{name} is {value}; it must be at most {most:,}")
        return value

    return parse


#: ``--min-samples``: a whole number >= 1.
min_samples_arg = whole_number("min-samples")


def weights_arg(text: str) -> str:
    """``--weights``: auto, pretrained, random, or a torchvision weights name."""
    import re

    from ..sources.loading import WEIGHTS

    value = text.strip()
    if value.lower() in WEIGHTS:
        return value.lower()
    if value.upper() == "DEFAULT" or re.fullmatch(r"[A-Za-z0-9]+(?:_[A-Za-z0-9]+)+", value):
        return value.upper()
    raise argparse.ArgumentTypeError(
        f"expected auto, pretrained, random or a torchvision weights name such as "
        f"IMAGENET1K_V1; got {text!r}"
    )


def add_weights_option(parser: argparse.ArgumentParser) -> None:
    """``--weights auto|pretrained|random|NAME`` for model names."""
    parser.add_argument(
        "--weights",
        type=weights_arg,
        default="auto",
        metavar="auto|pretrained|random|NAME",
        help="auto (default): pretrained where cached or downloadable (any cached variant "
        "counts), else random with a warning; pretrained: fail if unavailable; random: the "
        "architecture's seeded init (UNTRAINED); NAME: torchvision's weights of that name "
        "(IMAGENET1K_V1, IMAGENET1K_V2, ...)",
    )


def geometry_arg(text: str) -> int | tuple[int, int]:
    """``--stride`` / ``--padding`` / ``--dilation``: ``2`` or ``2,1`` (rows, columns)."""
    parts = text.replace("x", ",").split(",")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or min(values) < 0:
        raise argparse.ArgumentTypeError(
            f"expected a whole number or two (rows,columns) such as 2 or 2,1; got {text!r}"
        )
    return values[0] if len(values) == 1 else (values[0], values[1])


def add_geometry_options(parser: argparse.ArgumentParser) -> None:
    """``--stride``, ``--padding`` and ``--dilation``: a weights file's layer geometry."""
    what = "for weights files that do not record it; models, ONNX and Keras files know theirs"
    parser.add_argument(
        "--stride", type=geometry_arg, metavar="S", help=f"the layer's stride ({what})"
    )
    parser.add_argument(
        "--padding", type=geometry_arg, metavar="P", help=f"the layer's zero padding ({what})"
    )
    parser.add_argument(
        "--dilation", type=geometry_arg, metavar="D", help=f"the layer's dilation ({what})"
    )


def add_arch_option(parser: argparse.ArgumentParser) -> None:
    """``--arch``: the torchvision architecture of a state-dict file."""
    parser.add_argument(
        "--arch",
        metavar="NAME",
        help="the torchvision architecture of a state-dict file (e.g. resnet18): its layers "
        "are then named as in the model and run inside it, with ImageNet normalisation",
    )


def geometry(args: argparse.Namespace) -> dict[str, object]:
    """The ``load_kernels`` keyword arguments of `add_geometry_options`."""
    return {k: getattr(args, k, None) for k in ("stride", "padding", "dilation")}


def add_analysis_options(parser: argparse.ArgumentParser) -> None:
    """``--weights``, ``--method``, ``--threshold``, ``--alpha`` and ``--min-samples``."""
    from ..analysis import DEFAULT_MIN_SAMPLES, DEFAULT_THRESHOLD
    from ..analysis.chance import ALPHA
    from ..analysis.spectra import METHODS

    add_weights_option(parser)
    parser.add_argument(
        "--method",
        choices=METHODS,
        default="response",
        help="response (default): true frequency response on a cycles/pixel axis, complete-"
        "linkage clusters; seed: the original tool's spectra and DBSCAN clusters",
    )
    parser.add_argument(
        "--threshold",
        type=threshold_arg,
        default=None,
        metavar="T|auto",
        help="cluster similarity threshold in (0, 1], or 'auto': the lowest at which "
        "shuffled copies of the layer's own filters have at most --alpha of them clustered "
        f"(default: auto for response, {DEFAULT_THRESHOLD} for seed). A number also sets "
        f"duplicates and sign pairs (else {DEFAULT_THRESHOLD})",
    )
    parser.add_argument(
        "--alpha",
        type=alpha_arg,
        default=ALPHA,
        help=f"share of filters chance may cluster under 'auto' (default {ALPHA})",
    )
    parser.add_argument(
        "--min-samples",
        type=min_samples_arg,
        default=DEFAULT_MIN_SAMPLES,
        help=f"smallest cluster size (default {DEFAULT_MIN_SAMPLES})",
    )


def write_json(data: object, path: str) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically; a failure is one clear line."""
    import json

    from ..base.atomic import atomic_write
    from ..base.errors import KernelSpecError

    try:
        with atomic_write(path, "w") as fh:
            json.dump(data, fh, indent=2)
    except OSError as exc:
        raise KernelSpecError(
            f"cannot write {path}: {exc.strerror or exc}; pick a writable path"
        ) from None


@contextlib.contextmanager
def progress_bar(desc: str, unit: str) -> Iterator[Callable[[int, int], None]]:
    """A tqdm bar on stderr fed by ``(done, total)`` callbacks (steps, positions, images).

    The bar appears at the first callback, so an error found before the work starts is the
    only line on stderr.
    """
    from tqdm import tqdm

    bars: list[Any] = []

    def update(done: int, total: int) -> None:
        if not bars:
            bars.append(
                tqdm(
                    total=total,
                    desc=desc,
                    unit=unit,
                    file=sys.stderr,
                    dynamic_ncols=True,
                    leave=False,
                )
            )
        bar = bars[0]
        if bar.total != total:
            bar.total = total
            bar.refresh()
        bar.update(done - bar.n)

    try:
        yield update
    finally:
        for bar in bars:
            bar.close()


def add_model_output_options(parser: argparse.ArgumentParser) -> None:
    """``--device``, ``--weights``, ``--arch``, ``--out`` and ``--png`` of the explain family."""
    from ..imaging.explain.model import DEVICES

    parser.add_argument("--device", choices=DEVICES, default="auto")
    add_weights_option(parser)
    parser.add_argument(
        "--arch", metavar="NAME", help="the torchvision architecture of a state-dict SOURCE"
    )
    parser.add_argument("--out", required=True, metavar="PATH", help="the .npz to write")
    parser.add_argument("--png", metavar="PATH", help="also write a PNG mosaic")


def add_cluster_options(parser: argparse.ArgumentParser, workers_default: str) -> None:
    """``--scheduler ADDRESS`` or ``--workers N`` (one of them): where the Dask work runs.

    `workers_default` ends the ``--workers`` help: what runs without either option.
    """
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--scheduler", metavar="ADDRESS", help="a running Dask scheduler, e.g. tcp://host:8786"
    )
    where.add_argument(
        "--workers",
        type=whole_number("--workers"),
        metavar="N",
        help=f"worker processes of a local Dask cluster (default: {workers_default})",
    )


def quiet_dask_logs() -> None:
    """Dask reports every worker start and stop at INFO; the progress bar says enough."""
    import logging

    import distributed  # noqa: F401  (its import sets its loggers' levels: set ours after)

    for name in ("distributed", "tornado", "bokeh"):
        logging.getLogger(name).setLevel(logging.WARNING)
