"""Synthetic but realistic-looking images from integer-only operations: text pages, text lines, shape scenes."""

from __future__ import annotations

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_GLYPH_ROWS, _GLYPH_COLS = 7, 5


def font(rs: np.random.RandomState, n: int = 64) -> np.ndarray:
    """n random 7x5 bitmap 'glyphs' (bool), each with at least 10 inked cells so they read as characters."""
    glyphs: list[np.ndarray] = []
    while len(glyphs) < n:
        g = rs.randint(0, 2, size=(_GLYPH_ROWS, _GLYPH_COLS)).astype(bool)
        if g.sum() >= 10:
            glyphs.append(g)
    return np.stack(glyphs)


def _background(rs: np.random.RandomState, h: int, w: int) -> np.ndarray:
    base = rs.randint(200, 246, size=3)
    tint = rs.randint(0, 12, size=3)
    fall = rs.randint(0, 36)
    ys = np.arange(h, dtype=np.int64)[:, None, None]
    xs = np.arange(w, dtype=np.int64)[None, :, None]
    img = base[None, None, :] - (ys * fall) // h - (xs * tint[None, None, :]) // w
    return np.clip(img, 0, 255).astype(np.uint8)


def _draw_text(img: np.ndarray, glyphs: np.ndarray, rs: np.random.RandomState, y: int, x: int, scale: int,
               n_chars: int) -> None:
    """Draw n_chars random glyphs (with word gaps) at (y, x), clipped to the image."""
    ink = rs.randint(10, 90, size=3).astype(np.uint8)
    h, w = img.shape[:2]
    for _ in range(n_chars):
        if rs.randint(0, 6) == 0:
            x += 3 * scale
            continue
        g = glyphs[rs.randint(0, len(glyphs))]
        mask = np.repeat(np.repeat(g, scale, axis=0), scale, axis=1)
        gh, gw = min(mask.shape[0], h - y), min(mask.shape[1], w - x)
        if gh <= 0 or gw <= 0:
            return
        region = img[y:y + gh, x:x + gw]
        region[mask[:gh, :gw]] = ink
        x += (_GLYPH_COLS + 1) * scale


def text_page(rs: np.random.RandomState, glyphs: np.ndarray, h: int, w: int) -> np.ndarray:
    """A photographed-document-like page: tinted gradient paper, a few blocks and 8..18 lines of text; HxWx3 uint8."""
    img = _background(rs, h, w)
    for _ in range(rs.randint(1, 4)):
        y0, x0 = rs.randint(0, h - 40), rs.randint(0, w - 40)
        bh, bw = rs.randint(20, min(160, h - y0)), rs.randint(20, min(200, w - x0))
        img[y0:y0 + bh, x0:x0 + bw] = rs.randint(60, 230, size=3).astype(np.uint8)
    y = rs.randint(8, 40)
    while y < h - 20:
        scale = rs.randint(2, 5)
        x = rs.randint(8, w // 3)
        _draw_text(img, glyphs, rs, y, x, scale, rs.randint(4, (w - x) // ((_GLYPH_COLS + 1) * scale) + 1))
        y += (_GLYPH_ROWS + rs.randint(3, 9)) * scale
    return img


def text_line(rs: np.random.RandomState, glyphs: np.ndarray, h: int, w: int) -> np.ndarray:
    """A cropped single line of text, as a recogniser sees it; HxWx3 uint8."""
    img = _background(rs, h, w)
    scale = rs.randint(4, 6)
    y = (h - _GLYPH_ROWS * scale) // 2 + rs.randint(-2, 3)
    x = rs.randint(2, 24)
    _draw_text(img, glyphs, rs, y, x, scale, (w - x) // ((_GLYPH_COLS + 1) * scale))
    return img


def shapes_scene(rs: np.random.RandomState, size: int) -> np.ndarray:
    """A small scene of rectangles, discs and stripes on a gradient; size x size x 3 uint8."""
    img = _background(rs, size, size)
    yy, xx = np.mgrid[0:size, 0:size]
    for _ in range(rs.randint(2, 7)):
        colour = rs.randint(0, 256, size=3).astype(np.uint8)
        cy, cx, r = rs.randint(0, size), rs.randint(0, size), rs.randint(4, size // 3)
        kind = rs.randint(0, 3)
        if kind == 0:
            mask = (np.abs(yy - cy) <= r) & (np.abs(xx - cx) <= rs.randint(3, size // 2))
        elif kind == 1:
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        else:
            period = rs.randint(4, 12)
            mask = ((xx + yy * rs.randint(0, 2)) // period) % 2 == 0
            mask &= np.abs(yy - cy) <= r
        img[mask] = colour
    return img


def normalize(images: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """NxHxWx3 uint8 -> Nx3xHxW float32, (x/255 - mean) / std per channel, computed exactly in float64."""
    x = images.astype(np.float64) / 255.0
    x = (x - np.asarray(mean)) / np.asarray(std)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)).astype(np.float32)
