"""Super-resolution quality metrics as the SR literature reports them (MATLAB conventions), in NumPy."""
from __future__ import annotations

import numpy as np


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """BT.601 luma of an H x W x 3 RGB image on 0..255, as MATLAB's rgb2ycbcr (range 16..235)."""
    img = img.astype(np.float64)
    return 16.0 + (65.481 * img[..., 0] + 128.553 * img[..., 1] + 24.966 * img[..., 2]) / 255.0


def _prepare(sr: np.ndarray, hr: np.ndarray, shave: int) -> tuple[np.ndarray, np.ndarray]:
    if sr.shape != hr.shape:
        raise ValueError(f"SR {sr.shape} and HR {hr.shape} differ in shape")
    a = rgb_to_y(sr) if sr.ndim == 3 else sr.astype(np.float64)
    b = rgb_to_y(hr) if hr.ndim == 3 else hr.astype(np.float64)
    if shave:
        a, b = a[shave:-shave, shave:-shave], b[shave:-shave, shave:-shave]
    return a, b


def psnr_y(sr: np.ndarray, hr: np.ndarray, shave: int = 0) -> float:
    """PSNR on Y (peak 255) after shaving `shave` pixels at each border."""
    a, b = _prepare(sr, hr, shave)
    mse = np.mean((a - b) ** 2)
    return float("inf") if mse == 0 else float(10.0 * np.log10(255.0 ** 2 / mse))


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x ** 2) / (2.0 * sigma ** 2))
    return g / g.sum()


def _filter_valid(img: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation with a symmetric 1-D kernel on both axes."""
    k = len(g)
    rows = sum(g[i] * img[i:img.shape[0] - k + 1 + i, :] for i in range(k))
    return sum(g[i] * rows[:, i:rows.shape[1] - k + 1 + i] for i in range(k))


def ssim_y(sr: np.ndarray, hr: np.ndarray, shave: int = 0) -> float:
    """SSIM on Y with an 11x11 Gaussian window (sigma 1.5), 'valid' borders, as the MATLAB reference code."""
    a, b = _prepare(sr, hr, shave)
    if min(a.shape) < 11:
        raise ValueError(f"image of {a.shape[1]}x{a.shape[0]} px after shaving is too small for SSIM (needs 11x11)")
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    g = _gaussian_window()
    mu_a, mu_b = _filter_valid(a, g), _filter_valid(b, g)
    var_a = _filter_valid(a * a, g) - mu_a ** 2
    var_b = _filter_valid(b * b, g) - mu_b ** 2
    cov = _filter_valid(a * b, g) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float(ssim_map.mean())


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Round and clamp a float image on 0..255 to uint8 (what a saved PNG holds)."""
    return np.clip(np.round(img), 0, 255).astype(np.uint8)
