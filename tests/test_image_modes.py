"""Every image mode PIL opens decodes to the 8-bit RGB its values mean (``data/image_modes.py``).

Each case builds a one-row image of known pixels, writes it in a format that keeps the mode
(PNG, TIFF or PGM; PA only in memory, PIL cannot write it), reopens it the way training and
prediction do, and checks every decoded value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from data.datasets import decode_image_file, image_tensor
from utils.errors import DataError

Pixel = int | tuple[int, int, int]  # a grey level or an RGB colour
PALETTE = [255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30]  # red, green, blue, near-black


@dataclass
class Case:
    mode: str  # the mode PIL opens the written file in (or the image has, without a file)
    build: Callable[[], Image.Image]
    suffix: str | None  # the format written and read back; None: decoded in memory
    expected: list[Pixel]
    tolerance: int = 0  # for values blended with alpha, rounded either way
    variant: str = ""  # tells apart cases of one mode

    @property
    def name(self) -> str:
        return f"{self.mode}-{self.variant}" if self.variant else self.mode


def from_values(values: list, dtype: str) -> Image.Image:
    return Image.fromarray(np.array([values], dtype=dtype))


def palette_image(transparent_index: int | None = None) -> Image.Image:
    image = Image.new("P", (4, 1))
    image.putpalette(PALETTE)
    image.putdata([0, 1, 2, 3])
    if transparent_index is not None:
        image.info["transparency"] = transparent_index
    return image


def with_alpha(image: Image.Image, alpha: list[int]) -> Image.Image:
    image.putalpha(Image.frombytes("L", (len(alpha), 1), bytes(alpha)))
    return image


def bilevel() -> Image.Image:
    image = Image.new("1", (4, 1))
    image.putdata([0, 1, 1, 0])
    return image


def cmyk() -> Image.Image:
    image = Image.new("CMYK", (4, 1))
    image.putdata([(255, 0, 0, 0), (0, 0, 0, 255), (0, 0, 0, 0), (0, 255, 255, 0)])
    return image


SIXTEEN_BIT = [0, 257, 32896, 65535]  # 0, 1, 128 and 255 times 257
CASES = [
    Case("1", bilevel, ".png", [0, 255, 255, 0]),
    Case("L", lambda: from_values([0, 60, 200, 255], "uint8"), ".png", [0, 60, 200, 255]),
    Case(
        "LA",
        lambda: with_alpha(from_values([0, 60, 200, 255], "uint8"), [255, 0, 128, 255]),
        ".png",
        [0, 255, 228, 255],  # transparent on white is white; 200 at half alpha is 227.5
        tolerance=1,
    ),
    Case("P", palette_image, ".png", [(255, 0, 0), (0, 255, 0), (0, 0, 255), (10, 20, 30)]),
    Case(
        "P",
        lambda: palette_image(transparent_index=3),  # written as a PNG tRNS chunk
        ".png",
        [(255, 0, 0), (0, 255, 0), (0, 0, 255), 255],
        variant="transparent",
    ),
    Case(
        "PA",
        lambda: with_alpha(palette_image().convert("PA"), [255, 0, 255, 255]),
        None,
        [(255, 0, 0), 255, (0, 0, 255), (10, 20, 30)],
    ),
    Case(
        "RGB",
        lambda: from_values([(255, 0, 0), (0, 128, 255), (7, 8, 9), (0, 0, 0)], "uint8"),
        ".png",
        [(255, 0, 0), (0, 128, 255), (7, 8, 9), 0],
    ),
    Case(
        "RGBA",
        lambda: from_values(
            [(255, 0, 0, 255), (0, 0, 0, 0), (0, 128, 255, 255), (0, 0, 0, 128)], "uint8"
        ),
        ".png",
        [(255, 0, 0), 255, (0, 128, 255), 127],  # black at half alpha on white: 127.5
        tolerance=1,
    ),
    Case("CMYK", cmyk, ".tif", [(0, 255, 255), 0, 255, (255, 0, 0)]),
    Case("I;16", lambda: from_values(SIXTEEN_BIT, "uint16"), ".png", [0, 1, 128, 255]),
    Case("I;16B", lambda: from_values(SIXTEEN_BIT, ">u2"), ".tif", [0, 1, 128, 255]),
    Case("I", lambda: from_values(SIXTEEN_BIT, "uint16"), ".pgm", [0, 1, 128, 255], variant="pgm"),
    # 1000 / 257 = 3.9 and 40000 / 257 = 155.6: within 0..65535 a 32-bit image is 16-bit data
    Case(
        "I",
        lambda: from_values([0, 1000, 40000, 65535], "int32"),
        ".tif",
        [0, 4, 156, 255],
        variant="16-bit-range",
    ),
    # outside 0..65535 there is no known scale: stretched, -1000 black and 100000 white
    Case(
        "I",
        lambda: from_values([-1000, 0, 1000, 100000], "int32"),
        ".tif",
        [0, 3, 5, 255],
        variant="wide-range",
    ),
    Case("F", lambda: from_values([0, 0.2, 0.6, 1], "float32"), ".tif", [0, 51, 153, 255]),
    Case(
        "F",
        lambda: from_values([-1, 0, 1, 4], "float32"),
        ".tif",
        [0, 51, 102, 255],
        variant="wide-range",
    ),
]


def as_tensor(pixels: list[Pixel]) -> torch.Tensor:
    """(3, 1, W) uint8 of one row of pixels."""
    rgb = [p if isinstance(p, tuple) else (p, p, p) for p in pixels]
    return torch.tensor([rgb], dtype=torch.uint8).permute(2, 0, 1)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_each_mode_decodes_to_the_rgb_its_values_mean(case: Case, tmp_path: Path) -> None:
    image = case.build()
    if case.suffix is None:
        assert image.mode == case.mode
        decoded = image_tensor(image)
    else:
        path = tmp_path / f"image{case.suffix}"
        image.save(path)
        with Image.open(path) as reopened:
            assert reopened.mode == case.mode  # the file exercises the mode the case names
        decoded = decode_image_file(path)
    assert decoded.dtype == torch.uint8 and decoded.shape == (3, 1, 4)
    difference = (decoded.int() - as_tensor(case.expected).int()).abs()
    assert difference.max() <= case.tolerance, decoded.permute(1, 2, 0).tolist()


def test_a_large_16_bit_png_keeps_its_gradient(tmp_path: Path) -> None:
    """The failure that started this: a 16-bit gradient decoded as nearly all white."""
    ramp = np.linspace(0, 65535, 256 * 64).astype(np.uint16).reshape(64, 256)
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    decoded = decode_image_file(tmp_path / "ramp.png")
    assert decoded.float().mean() == pytest.approx(127.5, abs=0.5)
    assert (decoded == 255).float().mean() < 0.01


def test_float_pixels_without_a_value_are_refused_naming_the_file(tmp_path: Path) -> None:
    from_values([0, float("nan"), 1, 0.5], "float32").save(tmp_path / "nan.tif")
    with pytest.raises(DataError, match=r"nan\.tif.*NaN or infinity"):
        decode_image_file(tmp_path / "nan.tif")


def test_an_image_of_one_value_outside_the_known_ranges_is_black() -> None:
    assert image_tensor(from_values([7.5] * 4, "float32")).eq(0).all()
