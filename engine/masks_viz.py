"""Pictures of SMSR's spatial masks over the image (--save-masks): where the network spends its sparse work.

One PNG per image: a grid of panels at LR resolution, one per sparse block, numbered 0-4 like `smsr summary`
(the image darkened and desaturated, masked pixels tinted orange, the block's mask density in the corner), a last
panel with a heat map of how many blocks process each pixel, and a legend strip below saying what the colours mean.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

_TINT = np.array([255, 140, 0], np.float32)
# Heat map anchors (black -> purple -> orange -> yellow), for 0..1 = fraction of blocks active.
_HEAT = np.array([[0, 0, 0], [90, 20, 140], [230, 90, 30], [255, 230, 80]], np.float32)


def _heat(v: np.ndarray) -> np.ndarray:
    pos = np.clip(v, 0, 1) * (len(_HEAT) - 1)
    i = np.minimum(pos.astype(int), len(_HEAT) - 2)
    f = (pos - i)[..., None]
    return _HEAT[i] * (1 - f) + _HEAT[i + 1] * f


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1: a scalable font
    except TypeError:
        return ImageFont.load_default()


def panel_labels(masks: np.ndarray) -> list[str]:
    """Panel titles: blocks numbered from 0, as `smsr summary` numbers them, then the heat-map panel."""
    labels = ["block %d: %.0f%%" % (b, 100 * float(masks[b].mean())) for b in range(masks.shape[0])]
    return labels + ["blocks per pixel (mean %.0f%%)" % (100 * float(masks.mean()))]


def render_masks(lr_rgb: np.ndarray, masks: np.ndarray, columns: int = 3) -> Image.Image:
    """lr_rgb: H×W×3 float (0..255); masks: K×H×W in [0, 1]. Returns an RGB PIL image."""
    # Small images get their panels enlarged (nearest) so the masks stay readable.
    zoom = max(1, -(-256 // lr_rgb.shape[1]))
    if zoom > 1:
        lr_rgb = lr_rgb.repeat(zoom, 0).repeat(zoom, 1)
        masks = masks.repeat(zoom, 1).repeat(zoom, 2)
    h, w = lr_rgb.shape[:2]
    k = masks.shape[0]
    gray = (lr_rgb @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
    base = np.clip(gray, 0, 255) * 0.45
    panels = []
    for b in range(k):
        m = np.clip(masks[b], 0, 1)[..., None]
        panels.append(base * (1 - m * 0.3) + _TINT * m * 0.55)
    mean = masks.mean(axis=0)
    panels.append(base * 0.4 + _heat(mean) * 0.8)
    labels = panel_labels(masks)
    rows = -(-len(panels) // columns)
    gap = 2
    font = _font(max(12, min(24, w // 14)))
    line_h = font.getbbox("Ag")[3] + 4
    legend_h = 3 * line_h + 8
    canvas = np.full((rows * (h + gap) - gap + legend_h, columns * (w + gap) - gap, 3), 32, np.float32)
    for i, p in enumerate(panels):
        r, c = divmod(i, columns)
        canvas[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = p
    # legend: swatches and the heat-map colour bar
    top = rows * (h + gap) - gap + 4
    sw = line_h - 4
    canvas[top:top + sw, 4:4 + sw] = _TINT * 0.55 + 255 * 0.45 * 0.7 * 0.5
    canvas[top + line_h:top + line_h + sw, 4:4 + sw] = 255 * 0.45 * 0.5
    bar_w = min(160, canvas.shape[1] // 3)
    canvas[top + 2 * line_h:top + 2 * line_h + sw, 4:4 + bar_w] = _heat(np.linspace(0, 1, bar_w))[None] * 0.8
    img = Image.fromarray(np.clip(np.rint(canvas), 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    legend = [(8 + sw, "masked: the block computes its sparse channels here"),
              (8 + sw, "dark: skipped (dense channels only)"),
              (10 + bar_w, "0 -> all %d blocks process the pixel" % k)]
    for j, (x, text) in enumerate(legend):
        draw.text((x, top + j * line_h - 2), text, fill=(230, 230, 230), font=font)
    for i, text in enumerate(labels):
        r, c = divmod(i, columns)
        x, y = c * (w + gap) + 3, r * (h + gap) + 2
        draw.text((x + 1, y + 1), text, fill=(0, 0, 0), font=font)
        draw.text((x, y), text, fill=(255, 255, 255), font=font)
    return img
