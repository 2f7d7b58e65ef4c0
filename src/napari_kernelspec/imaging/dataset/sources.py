"""Where a dataset's images come from, and how one of them is read.

Three kinds of source:

- a folder in torchvision's ``ImageFolder`` layout (one subfolder per class, images below
  it): the classes and files are found by ``torchvision.datasets.folder`` itself;
- an unlabelled folder (images directly in it, or in subfolders that are not classes when
  `labelled` is False): every image, class None;
- the bundled digits sample: scikit-learn's 1,797 handwritten digits (8x8, 16 grey
  levels), upscaled to 32x32 in [0, 1] exactly as the package's LeNet5 was trained on them
  (`sources.digits.RECIPE`).

An item is ``(key, label)``: the key is a file path or ``"digits:<index>"``, the label an
index into `DatasetSource.classes` or -1 (unlabelled). Items are plain strings and ints, so
a slice of them travels cheaply to a Dask worker, which reads its own images.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...base.errors import KernelSpecError
from ..images import read_image

__all__ = [
    "DIGITS_PREFIX",
    "SAMPLES",
    "DatasetSource",
    "digits_source",
    "folder_source",
    "load_item",
    "open_source",
    "thumbnail",
]

#: Bundled samples (``--sample``).
SAMPLES = ("digits",)
DIGITS_PREFIX = "digits:"
#: Side of the pixel-space thumbnails (the neighbours in pixel space compare these).
THUMBNAIL = 32
#: File suffixes read as images (torchvision's ``IMG_EXTENSIONS`` plus TIFF).
_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class DatasetSource:
    """The images of a dataset and their classes.

    Attributes
    ----------
    items : tuple of (str, int)
        ``(key, label)`` per image, in a fixed order (the row order of every table).
    classes : tuple of str
        Class names; a label indexes them (-1: no class).
    name : str
        What the source is (a folder path, ``"digits sample"``).
    description : str
        One line for reports.
    """

    items: tuple[tuple[str, int], ...]
    classes: tuple[str, ...]
    name: str
    description: str

    def __len__(self) -> int:
        return len(self.items)

    @property
    def labels(self) -> np.ndarray:
        """(M,) ndarray of int64: each image's class index, -1 where there is none."""
        return np.fromiter((label for _, label in self.items), np.int64, len(self.items))

    @property
    def labelled(self) -> bool:
        """True when every image has a class."""
        return bool(self.classes) and all(label >= 0 for _, label in self.items)


def _is_image(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(_SUFFIXES)


def folder_source(folder: str | os.PathLike[str], labelled: bool | None = None) -> DatasetSource:
    """The images of a folder.

    Parameters
    ----------
    folder : path-like
        A class-per-subfolder tree (``folder/cat/1.png``) or a folder of images.
    labelled : bool, optional
        True: the ImageFolder layout is required. False: every image below `folder`,
        without classes. Default: ImageFolder when `folder` has subfolders holding images
        and no images of its own, unlabelled otherwise.

    Returns
    -------
    DatasetSource
        Files in sorted order (classes sorted by name, as torchvision does).

    Raises
    ------
    KernelSpecError
        A missing folder or one without images.
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise KernelSpecError(f"{root} is not a folder; give a folder of images")
    own = sorted(p.name for p in root.iterdir() if p.is_file() and _is_image(p.name))
    subfolders = sorted(
        p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
    )
    if labelled is None:
        labelled = bool(subfolders) and not own
    if labelled:
        from torchvision.datasets.folder import make_dataset

        classes = [c for c in subfolders if any(_walk_images(root / c))]
        if len(classes) < 1:
            raise KernelSpecError(
                f"{root} has no class subfolders with images; give a folder laid out as "
                "FOLDER/<class>/<image>"
            )
        found = make_dataset(
            str(root), {c: i for i, c in enumerate(classes)}, is_valid_file=_valid_file
        )
        items = tuple((str(path), int(label)) for path, label in found)
        kind = f"{len(classes)} classes (one subfolder each)"
        return DatasetSource(
            items, tuple(classes), str(root), f"{root}: {len(items)} images, {kind}"
        )
    paths = sorted(str(p) for p in _walk_images(root))
    if not paths:
        raise KernelSpecError(f"{root} holds no images (.png, .jpg, .tif, ...)")
    items = tuple((p, -1) for p in paths)
    return DatasetSource(items, (), str(root), f"{root}: {len(items)} images, no classes")


def _valid_file(path: str) -> bool:
    return _is_image(os.path.basename(path))


def _walk_images(root: Path):
    for here, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if _is_image(name):
                yield Path(here, name)


@functools.cache
def _digits() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits as (M, 32, 32) float32 in [0, 1] and their (M,) labels."""
    import torch
    from sklearn.datasets import load_digits

    data = load_digits()
    images = torch.from_numpy(data.images.astype(np.float32) / 16.0)[:, None]
    images = torch.nn.functional.interpolate(
        images, size=(32, 32), mode="bilinear", align_corners=False
    )  # as sources.digits.load_digits_32, the LeNet5's training images
    return np.clip(images[:, 0].numpy(), 0.0, 1.0), data.target.astype(np.int64)


def digits_source(limit: int | None = None) -> DatasetSource:
    """scikit-learn's handwritten digits as a labelled dataset (classes ``"0"`` .. ``"9"``).

    Parameters
    ----------
    limit : int, optional
        Only the first `limit` digits.
    """
    _, labels = _digits()
    n = len(labels) if limit is None else min(int(limit), len(labels))
    items = tuple((f"{DIGITS_PREFIX}{i}", int(labels[i])) for i in range(n))
    return DatasetSource(
        items,
        tuple(str(d) for d in range(10)),
        "digits sample",
        f"scikit-learn's handwritten digits ({n} images, 8x8 upscaled to 32x32, 10 classes)",
    )


def open_source(
    folder: str | os.PathLike[str] | None = None, sample: str | None = None
) -> DatasetSource:
    """A folder or a bundled sample (exactly one of them).

    Raises
    ------
    KernelSpecError
        Both or neither given, an unknown sample, or a folder without images.
    """
    if (folder is None) == (sample is None):
        raise KernelSpecError("give either a folder of images or a bundled sample, not both")
    if sample is not None:
        if sample not in SAMPLES:
            raise KernelSpecError(
                f"unknown sample {sample!r}; the samples are: {', '.join(SAMPLES)}"
            )
        return digits_source()
    return folder_source(folder)  # type: ignore[arg-type]


def load_item(key: str) -> np.ndarray:
    """The image of an item key: a file read with Pillow, or a bundled digit.

    Returns
    -------
    (H, W) or (H, W, 3 | 4) ndarray
    """
    if key.startswith(DIGITS_PREFIX) and not os.path.exists(key):
        images, _ = _digits()
        try:
            return images[int(key[len(DIGITS_PREFIX) :])]
        except (ValueError, IndexError):
            raise KernelSpecError(f"no bundled digit {key!r}") from None
    return read_image(key)


def thumbnail(image: np.ndarray, size: int = THUMBNAIL) -> np.ndarray:
    """A (size, size, 3) uint8 RGB thumbnail (Pillow bilinear; intensities as the layer's
    input scaling: integers over their type's maximum, floats min-max into [0, 1]).
    """
    from PIL import Image

    from ..images import prepare

    prep = prepare(image, 1 if np.asarray(image).ndim == 2 else 3)
    arr = prep.image
    unit = np.asarray(arr, np.float32) * np.float32(prep.gain) + np.float32(prep.offset)
    pixels = np.round(np.clip(unit, 0.0, 1.0) * 255).astype(np.uint8)
    small = np.asarray(Image.fromarray(pixels).resize((size, size), Image.Resampling.BILINEAR))
    if small.ndim == 2:
        small = np.repeat(small[:, :, None], 3, axis=2)
    return small
