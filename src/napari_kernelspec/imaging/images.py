"""Images in: reading files, checking arrays, and turning pixels into a layer's input.

The conversion is done per tile (`Preparation.tile`), so that a large uint8 image is never
held as a whole float copy: the float input of one tile at a time is all that exists.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..base.errors import KernelSpecError
from ..base.limits import check_elements

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LUMA",
    "NORMALIZE",
    "Preparation",
    "as_image",
    "prepare",
    "read_image",
]

#: Accepted values of ``normalize``.
NORMALIZE = ("auto", "none")
#: torchvision's ImageNet preprocessing (``weights.transforms()``), on [0, 1] RGB.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: RGB -> luminance (ITU-R BT.709, as ``skimage.color.rgb2gray``).
LUMA = (0.2125, 0.7154, 0.0721)


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file with Pillow.

    Parameters
    ----------
    path : path-like
        Any format Pillow reads (PNG, JPEG, TIFF, BMP, ...). Multi-frame files give their first
        frame.

    Returns
    -------
    (H, W) or (H, W, 3) or (H, W, 4) ndarray
        uint8 for 8-bit files, uint16 / int32 / float32 for 16-bit, 32-bit and float ones;
        palette and CMYK images become RGB, grey + alpha becomes grey.

    Raises
    ------
    KernelSpecError
        For a missing, unreadable, non-image or zero-size file, or one beyond Pillow's
        decompression-bomb limit.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise KernelSpecError(f"image {str(path)!r} does not exist or is not a file")
    try:
        with Image.open(path) as img:
            img.seek(0)
            width, height = img.size  # from the header: checked before decoding
            check_elements((height, width, len(img.getbands())), f"the image {path.name}")
            if img.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
                img = img.convert(
                    "RGBA" if "A" in img.mode or "transparency" in img.info else "RGB"
                )
            elif img.mode == "LA":
                img = img.getchannel("L")
            elif img.mode == "1":
                img = img.convert("L")
            array = np.array(img)
    except KernelSpecError:
        raise
    except UnidentifiedImageError:
        raise KernelSpecError(
            f"{path.name} is not an image Pillow can read; give a PNG, JPEG or TIFF file"
        ) from None
    except Image.DecompressionBombError as exc:
        raise KernelSpecError(f"{path.name}: {exc}; give a smaller image") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise KernelSpecError(
            f"{path.name} is damaged or truncated ({exc}); give a complete image file"
        ) from None
    return as_image(array, path.name)


def as_image(image: Any, what: str = "image") -> np.ndarray:
    """Check an image array: (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), real, finite, non-empty.

    Parameters
    ----------
    image : array_like
        Grey, RGB or RGBA; bool, integer or floating.
    what : str
        How to name it in error messages.

    Returns
    -------
    (H, W) or (H, W, 3) or (H, W, 4) ndarray
        The same data (not copied); a trailing axis of 1 is dropped.

    Raises
    ------
    KernelSpecError
        For another shape, a zero-size image, a complex/object dtype or NaN / Inf pixels.
    """
    arr = np.asarray(image)
    if arr.dtype.kind not in "buif":
        raise KernelSpecError(f"{what} has dtype {arr.dtype}; give a numeric image")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        raise KernelSpecError(
            f"{what} has shape {arr.shape}; give a 2-D grey image or an (H, W, 3) RGB / "
            "(H, W, 4) RGBA image"
        )
    if 0 in arr.shape:
        raise KernelSpecError(f"{what} is empty (shape {arr.shape}); give an image with pixels")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise KernelSpecError(f"{what} has NaN or Inf pixels; replace them before filtering")
    return arr


@dataclass(frozen=True)
class Preparation:
    """How an image becomes a layer's input; `tile` applies it to a band of rows.

    Attributes
    ----------
    image : (H, W[, 3]) ndarray
        The checked image, alpha dropped (a view: never copied whole).
    channels : int
        The layer's input channels.
    offset, gain : float
        Intensity scaling to [0, 1] (or as given): ``x * gain + offset``.
    mean, std : (C,) tuple of float or None
        Per-channel normalisation after scaling (ImageNet's for torchvision models).
    meta : dict
        What was done, JSON-safe (``"normalisation"``, ``"channels"``, ``"scaling"``).
    """

    image: np.ndarray
    channels: int
    offset: float
    gain: float
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    meta: dict[str, Any]

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the image."""
        return int(self.image.shape[0]), int(self.image.shape[1])

    def tile(self, r0: int, r1: int) -> np.ndarray:
        """Rows ``r0:r1`` as the layer's input.

        Returns
        -------
        (1, C, r1 - r0, W) ndarray of float32
        """
        band = np.asarray(self.image[r0:r1], dtype=np.float32)
        band = band[None] if band.ndim == 2 else np.moveaxis(band, -1, 0)
        if self.gain != 1.0 or self.offset != 0.0:
            band = band * np.float32(self.gain) + np.float32(self.offset)
        if band.shape[0] == 3 and self.channels == 1:
            band = np.tensordot(np.asarray(LUMA, np.float32), band, axes=1)[None]
        elif band.shape[0] == 1 and self.channels > 1:
            band = np.repeat(band, self.channels, axis=0)
        if self.mean is not None and self.std is not None:
            mean = np.asarray(self.mean, np.float32)[:, None, None]
            std = np.asarray(self.std, np.float32)[:, None, None]
            band = (band - mean) / std
        return np.ascontiguousarray(band[None], dtype=np.float32)


def _scaling(image: np.ndarray, normalize: str) -> tuple[float, float, str]:
    """(gain, offset, description) that bring the intensities to [0, 1] (or leave them)."""
    kind = image.dtype.kind
    if kind == "b":
        return 1.0, 0.0, "bool as 0 / 1"
    if kind == "u" and image.dtype.itemsize <= 2:
        top = float(np.iinfo(image.dtype).max)
        return 1.0 / top, 0.0, f"{image.dtype} / {top:g}"
    if normalize == "none":
        return 1.0, 0.0, f"{image.dtype} as given"
    lo, hi = float(image.min()), float(image.max())
    if lo >= 0.0 and hi <= 1.0:
        return 1.0, 0.0, f"{image.dtype} already in [0, 1]"
    if hi == lo:
        return 0.0, 0.0, f"constant {image.dtype} image -> 0"
    return 1.0 / (hi - lo), -lo / (hi - lo), f"{image.dtype} min-max [{lo:g}, {hi:g}] -> [0, 1]"


def prepare(
    image: Any,
    channels: int,
    normalize: str = "auto",
    *,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    what: str = "image",
) -> Preparation:
    """Plan the conversion of `image` into a `channels`-channel input.

    Parameters
    ----------
    image : (H, W) or (H, W, 3) or (H, W, 4) array_like
        Grey, RGB or RGBA (alpha is dropped).
    channels : int
        Input channels of the layer. A grey image on a multi-channel layer is repeated, an RGB
        image on a 1-channel layer becomes its luminance (BT.709).
    normalize : {"auto", "none"}
        ``"auto"``: intensities to [0, 1] (integers / their type's maximum, floats outside
        [0, 1] by min-max), then `mean` / `std` if given. ``"none"``: uint8 / 255 and uint16
        / 65535, every other type as given, no mean / std.
    mean, std : tuple of float, optional
        Per-channel normalisation applied after scaling when `normalize` is ``"auto"``.

    Returns
    -------
    Preparation

    Raises
    ------
    KernelSpecError
        For a bad image or normalize value, or channels the image cannot provide.
    """
    if normalize not in NORMALIZE:
        raise KernelSpecError(
            f"normalize must be one of {', '.join(NORMALIZE)}, got {normalize!r}"
        )
    arr = as_image(image, what)
    if arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, :3]
        alpha = "alpha dropped"
    else:
        alpha = ""
    given = 1 if arr.ndim == 2 else 3
    if channels == given:
        conversion = "as given"
    elif given == 1:
        conversion = f"grey repeated on {channels} channels"
    elif channels == 1:
        conversion = "RGB -> luminance (BT.709)"
    else:
        raise KernelSpecError(
            f"the layer takes {channels} input channels but the {what} has {given}; "
            "give a grey or RGB image to a layer with 1 or 3 input channels"
        )
    gain, offset, scaling = _scaling(arr, normalize)
    if normalize == "none" or mean is None or std is None:
        mean = std = None
        name = "none" if normalize == "none" else "[0, 1]"
    else:
        if len(mean) != channels or len(std) != channels:
            mean = std = None
            name = "[0, 1]"
        else:
            name = f"mean {list(mean)} std {list(std)}"
    meta = {
        "normalisation": name,
        "scaling": scaling,
        "channels": ", ".join(p for p in (conversion, alpha) if p),
        "image_shape": list(arr.shape),
        "image_dtype": str(arr.dtype),
    }
    return Preparation(arr, channels, offset, gain, mean, std, meta)
