"""Any image PIL opens, as 8-bit RGB scaled by the real range of its pixel values.

PIL's own ``convert("RGB")`` clips wider pixel types to 0..255 instead of scaling them: a
16-bit PNG comes out almost all white and a float TIFF with values in [0, 1] black. The rules:

- 16-bit integers (``I;16``, ``I;16B``, ``I;16L``, ``I;16N``) span 0..65535: divided by 257.
- 32-bit integers (``I``): PIL opens 16-bit PGMs, and in some versions 16-bit PNGs, in this
  mode, so values within 0..65535 are read as 16-bit; values outside that range have no known
  scale and are stretched from their minimum (black) to their maximum (white).
- 32-bit floats (``F``): values within [0, 1] are multiplied by 255; others (HDR, depth or
  0..255 floats) are stretched from minimum to maximum. NaN or infinity is refused, and an
  image of one value throughout (no range to stretch) is black.
- Transparency (``LA``, ``PA``, ``RGBA``, ``La``, ``RGBa``, and ``P``, ``L`` or ``RGB`` with a
  transparent colour) is composited on white rather than dropped: fully transparent pixels
  often hold black or leftover colours that were never meant to be seen.
- Every other mode (``1``, ``L``, ``P``, ``RGB``, ``CMYK``, ``YCbCr``, ...) is 8-bit already,
  and PIL's conversion is right for it.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from utils.errors import DataError

SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
ALPHA_MODES = ("LA", "PA", "RGBA", "La", "RGBa")
BACKGROUND = (255, 255, 255)


def to_rgb8(image: Image.Image) -> Image.Image:
    """``image`` as an RGB image of 8-bit values (see the module's docstring for the rules)."""
    if image.mode in SIXTEEN_BIT_MODES or image.mode in ("I", "F"):
        return Image.fromarray(gray_to_uint8(image), mode="L").convert("RGB")
    if image.mode in ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def gray_to_uint8(image: Image.Image) -> np.ndarray:
    """(H, W) uint8 of a 16-bit, 32-bit integer or float single-channel image."""
    values = np.asarray(image).astype(np.float64)
    if image.mode in SIXTEEN_BIT_MODES:
        return to_uint8(values / 257)
    if image.mode == "F" and not np.isfinite(values).all():
        raise DataError("its float pixels include NaN or infinity, which have no colour")
    low, high = (values.min(), values.max()) if values.size else (0.0, 0.0)
    if image.mode == "I" and low >= 0 and high <= 65535:
        return to_uint8(values / 257)
    if image.mode == "F" and low >= 0 and high <= 1:
        return to_uint8(values * 255)
    if high == low:  # one value throughout: no range to stretch, so black
        return np.zeros(values.shape, np.uint8)
    return to_uint8((values - low) * (255 / (high - low)))


def to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)
