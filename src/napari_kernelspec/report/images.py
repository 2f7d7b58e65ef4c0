"""PNG encoding with the standard library (zlib + struct), pixel upscaling and a colour map.

The report embeds every image as a ``data:image/png;base64,...`` URI, so the HTML file is
self-contained. Encoding a PNG takes twenty lines; no Pillow or matplotlib is needed.
"""

from __future__ import annotations

import base64
import struct
import zlib

import numpy as np

__all__ = [
    "colormap",
    "decode_png",
    "encode_png",
    "png_data_uri",
    "to_uint8",
    "upscale",
    "upscale_factor",
]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOR_TYPES = {1: 0, 3: 2, 4: 6}  # channels -> PNG colour type (grey, RGB, RGBA)
_CHANNELS = {0: 1, 2: 3, 6: 4}

#: Anchor colours of the sequential colour map (viridis, sampled at 11 points).
SEQUENTIAL = (
    (0.267, 0.005, 0.329),
    (0.282, 0.141, 0.458),
    (0.254, 0.265, 0.530),
    (0.207, 0.372, 0.553),
    (0.164, 0.471, 0.558),
    (0.128, 0.567, 0.551),
    (0.135, 0.659, 0.518),
    (0.267, 0.749, 0.441),
    (0.478, 0.821, 0.318),
    (0.741, 0.873, 0.150),
    (0.993, 0.906, 0.144),
)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] to uint8 (values outside are clipped).

    Parameters
    ----------
    image : (H, W) or (H, W, C) array_like
        Floats in [0, 1] (uint8 input is returned unchanged).

    Returns
    -------
    (H, W) or (H, W, C) ndarray of uint8
    """
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image
    if image.dtype.kind not in "fiu":
        raise ValueError(f"image must be numeric, got dtype {image.dtype}")
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def upscale_factor(size: int, target: int, most: int = 64) -> int:
    """Integer factor that brings `size` pixels to about `target` pixels (at least 1)."""
    if size < 1 or target < 1:
        raise ValueError(f"size and target must be >= 1, got {size} and {target}")
    return int(min(most, max(1, round(target / size))))


def upscale(image: np.ndarray, factor: int, axes: tuple[int, int] = (0, 1)) -> np.ndarray:
    """Nearest-neighbour upscaling by an integer `factor` (every pixel becomes a block).

    Parameters
    ----------
    image : ndarray
        Any array; the two `axes` are enlarged (``(1, 2)`` for an (N, h, w[, 3]) stack).
    factor : int
        Block size, >= 1.

    Returns
    -------
    ndarray
        `image` with ``shape[axes[i]] * factor`` along both axes.
    """
    if isinstance(factor, bool) or int(factor) != factor or factor < 1:
        raise ValueError(f"factor must be a whole number >= 1, got {factor!r}")
    factor = int(factor)
    out = np.asarray(image)
    if factor == 1:
        return out
    for axis in axes:
        out = np.repeat(out, factor, axis=axis)
    return out


def colormap(values: np.ndarray, vmin: float = 0.0, vmax: float = 1.0) -> np.ndarray:
    """Map scalars to RGB with the sequential (viridis-like) colour map.

    Parameters
    ----------
    values : (...) array_like
        Scalars; `vmin` maps to dark purple, `vmax` to yellow, values outside are clipped.

    Returns
    -------
    (..., 3) ndarray of float64 in [0, 1]
    """
    if not vmax > vmin:
        raise ValueError(f"vmax must be greater than vmin, got {vmin} and {vmax}")
    t = np.clip((np.asarray(values, dtype=np.float64) - vmin) / (vmax - vmin), 0.0, 1.0)
    anchors = np.asarray(SEQUENTIAL)
    x = np.linspace(0.0, 1.0, len(anchors))
    t = np.nan_to_num(t, nan=0.0)
    return np.stack([np.interp(t, x, anchors[:, c]) for c in range(3)], axis=-1)


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def encode_png(image: np.ndarray, level: int = 9) -> bytes:
    """Encode an 8-bit image as PNG bytes.

    Parameters
    ----------
    image : (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) array_like
        Grey, RGB or RGBA; floats in [0, 1] are converted with `to_uint8`.
    level : int
        zlib compression level.

    Returns
    -------
    bytes
        A complete PNG file (filter type 0 on every row).
    """
    pixels = to_uint8(image)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if pixels.ndim != 3 or pixels.shape[2] not in _COLOR_TYPES or 0 in pixels.shape:
        raise ValueError(
            f"image must be a non-empty (H, W), (H, W, 3) or (H, W, 4) array, got {pixels.shape}"
        )
    height, width, channels = pixels.shape
    rows = np.ascontiguousarray(pixels).reshape(height, width * channels)
    raw = np.hstack([np.zeros((height, 1), np.uint8), rows]).tobytes()
    header = struct.pack(">IIBBBBB", width, height, 8, _COLOR_TYPES[channels], 0, 0, 0)
    return (
        _SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw, level))
        + _chunk(b"IEND", b"")
    )


def png_data_uri(image: np.ndarray) -> str:
    """``data:image/png;base64,...`` URI of `image` (see `encode_png`)."""
    return "data:image/png;base64," + base64.b64encode(encode_png(image)).decode("ascii")


def _unfilter(raw: bytes, height: int, stride: int, bpp: int) -> np.ndarray:
    """Undo the per-row PNG filters (types 0-4) of 8-bit, non-interlaced data."""
    out = np.zeros((height, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.uint8)
    pos = 0
    for y in range(height):
        kind = raw[pos]
        line = np.frombuffer(raw, np.uint8, stride, pos + 1)
        pos += stride + 1
        if kind == 0:
            cur = line.copy()
        elif kind == 2:
            cur = line + prev
        elif kind == 1:  # Sub: running sum along each of the bpp interleaved lanes
            cur = np.empty_like(line)
            for lane in range(bpp):
                cur[lane::bpp] = np.cumsum(line[lane::bpp], dtype=np.uint64).astype(np.uint8)
        elif kind in (3, 4):
            cur = line.astype(np.int32)
            up = prev.astype(np.int32)
            for x in range(stride):
                left = cur[x - bpp] if x >= bpp else 0
                if kind == 3:
                    pred = (left + up[x]) >> 1
                else:
                    ul = up[x - bpp] if x >= bpp else 0
                    p = left + up[x] - ul
                    pa, pb, pc = abs(p - left), abs(p - up[x]), abs(p - ul)
                    pred = left if pa <= pb and pa <= pc else (up[x] if pb <= pc else ul)
                cur[x] = (cur[x] + pred) & 0xFF
            cur = cur.astype(np.uint8)
        else:
            raise ValueError(f"unknown PNG filter type {kind}")
        out[y] = cur
        prev = cur
    return out


def decode_png(data: bytes) -> np.ndarray:
    """Decode an 8-bit grey, RGB or RGBA, non-interlaced PNG (browsers' and `encode_png`'s).

    Used by the tests and the screenshot script to look at pixels without Pillow. Rows with
    the Average or Paeth filter are decoded in Python, so keep images moderate in size.

    Returns
    -------
    (H, W, C) ndarray of uint8
        C = 1, 3 or 4.
    """
    if not data.startswith(_SIGNATURE):
        raise ValueError("not a PNG file")
    pos, idat, header = len(_SIGNATURE), [], None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    if header is None:
        raise ValueError("PNG has no IHDR chunk")
    width, height, depth, color_type, _, _, interlace = header
    if depth != 8 or color_type not in _CHANNELS or interlace:
        raise ValueError(f"unsupported PNG (bit depth {depth}, colour type {color_type})")
    channels = _CHANNELS[color_type]
    rows = _unfilter(zlib.decompress(b"".join(idat)), height, width * channels, channels)
    return rows.reshape(height, width, channels)
