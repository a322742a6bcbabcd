"""Synthetic degradations of a photo, as XQLFW and NIST's quality evaluations use them: the photo made
small, pixelated, blurred, noisy, dark, overexposed or blocky with JPEG. Seeded, so a study is
repeatable; used to fit the quality model on View 1 and to test it on View 2 (never the same images).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

KINDS = ("small", "pixelated", "blur", "noise", "dark", "bright", "jpeg")


def degrade(image: Image.Image, kind: str, rng: np.random.Generator) -> Image.Image:
    """`image` (RGB) degraded by `kind` at a strength drawn from `rng`."""
    width, height = image.size
    if kind == "small":  # the face few pixels wide, as in a distant shot: a reduced copy on a grey canvas
        factor = rng.uniform(3.0, 6.0)
        small = image.resize((round(width / factor), round(height / factor)), Image.Resampling.BOX)
        canvas = Image.new("RGB", (width, height), (118, 118, 118))
        canvas.paste(small, ((width - small.width) // 2, (height - small.height) // 2))
        return canvas
    if kind == "pixelated":  # detail lost, size kept
        factor = rng.uniform(3.0, 8.0)
        small = image.resize((round(width / factor), round(height / factor)), Image.Resampling.BOX)
        return small.resize((width, height), Image.Resampling.BILINEAR)
    if kind == "blur":
        return image.filter(ImageFilter.GaussianBlur(rng.uniform(1.5, 5.0)))
    if kind == "noise":
        noisy = np.asarray(image, np.float64) + rng.normal(0.0, rng.uniform(12.0, 45.0), (height, width, 3))
        return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
    if kind == "dark":
        return ImageEnhance.Brightness(image).enhance(rng.uniform(0.08, 0.35))
    if kind == "bright":
        return ImageEnhance.Brightness(image).enhance(rng.uniform(2.0, 4.0))
    if kind == "jpeg":
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=int(rng.integers(3, 12)))
        return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    raise ValueError(f"unknown degradation {kind!r}; known: {', '.join(KINDS)}")
