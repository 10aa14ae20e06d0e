"""A tiny numpy rasteriser for the built-in scenes' frames (`render()`, `palaestra play --record`).

Why not Pillow or matplotlib: the frames are a handful of flat shapes, numpy alone draws them in
well under a millisecond, and the environments keep no dependency beyond numpy.

Coordinates are pixels as floats, x to the right and y **down** (image rows); a pixel is covered
when its centre, at ``(column + 0.5, row + 0.5)``, lies inside the shape. No anti-aliasing: the
frames are for watching a policy, not for print. Each shape only touches the pixels of its
bounding box, so a frame costs about the area of what is drawn.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import numpy as np

Colour = Tuple[int, int, int]


class Canvas:
    """An RGB image of ``height`` x ``width`` pixels, filled with `background`, drawn on in place;
    `pixels` (H, W, 3) uint8 is the frame (a new canvas per frame, so frames can be kept)."""

    def __init__(self, width: int, height: int, background: Colour) -> None:
        self.pixels = np.empty((int(height), int(width), 3), np.uint8)
        self.pixels[:] = background

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    def _box(self, x0: float, y0: float, x1: float, y1: float
             ) -> Optional[Tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(view of the pixels, pixel-centre y as a column, x as a row) of the pixels whose
        centres may lie in [x0, x1] x [y0, y1]; None when that is off the canvas."""
        c0, c1 = max(math.floor(x0), 0), min(math.ceil(x1), self.width)
        r0, r1 = max(math.floor(y0), 0), min(math.ceil(y1), self.height)
        if c0 >= c1 or r0 >= r1:
            return None
        ys = np.arange(r0, r1, dtype=np.float64)[:, None] + 0.5
        xs = np.arange(c0, c1, dtype=np.float64)[None, :] + 0.5
        return self.pixels[r0:r1, c0:c1], ys, xs

    def rect(self, x0: float, y0: float, x1: float, y1: float, colour: Colour) -> None:
        """Axis-aligned filled rectangle between corners (x0, y0) and (x1, y1)."""
        x0, x1 = min(x0, x1), max(x0, x1)
        y0, y1 = min(y0, y1), max(y0, y1)
        box = self._box(x0, y0, x1, y1)
        if box is not None:
            view, ys, xs = box
            view[((ys >= y0) & (ys < y1)) & ((xs >= x0) & (xs < x1))] = colour

    def circle(self, cx: float, cy: float, radius: float, colour: Colour) -> None:
        box = self._box(cx - radius, cy - radius, cx + radius, cy + radius)
        if box is not None:
            view, ys, xs = box
            view[(xs - cx) ** 2 + (ys - cy) ** 2 <= radius * radius] = colour

    def line(self, x0: float, y0: float, x1: float, y1: float, width: float,
             colour: Colour) -> None:
        """Segment of thickness `width` with round ends: the pixels within width / 2 of it."""
        half = width / 2.0
        box = self._box(min(x0, x1) - half, min(y0, y1) - half,
                        max(x0, x1) + half, max(y0, y1) + half)
        if box is None:
            return
        view, ys, xs = box
        dx, dy = x1 - x0, y1 - y0
        length2 = dx * dx + dy * dy
        # the closest point of the segment: projection parameter t clipped to [0, 1]
        t = np.clip(((xs - x0) * dx + (ys - y0) * dy) / length2, 0.0, 1.0) if length2 > 0 \
            else np.zeros(np.broadcast_shapes(xs.shape, ys.shape))
        view[(xs - x0 - t * dx) ** 2 + (ys - y0 - t * dy) ** 2 <= half * half] = colour

    def polygon(self, points: Sequence[Tuple[float, float]], colour: Colour) -> None:
        """Filled **convex** polygon, vertices in either winding order: a pixel is inside when it
        lies on the same side of every edge (the sign of each edge's cross product)."""
        p = np.asarray(points, np.float64).reshape(-1, 2)
        box = self._box(p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max())
        if box is None or len(p) < 3:
            return
        view, ys, xs = box
        edge = np.roll(p, -1, axis=0) - p                       # (k, 2)
        cross = (edge[:, 0, None, None] * (ys - p[:, 1, None, None])
                 - edge[:, 1, None, None] * (xs - p[:, 0, None, None]))  # (k, h, w)
        view[(cross >= 0).all(axis=0) | (cross <= 0).all(axis=0)] = colour


MIN_CELL = 8  # pixels: a grid cell is never drawn smaller


def grid_canvas(cells: int, side: int, floor: Colour, lines: Colour, line_width: float
                ) -> Tuple[Canvas, int]:
    """A square board of `cells` x `cells` about `side` pixels wide, its cell lines drawn;
    returns it with the cell size in pixels (GridWorld, Pyramids)."""
    cell = max(MIN_CELL, side // cells)
    canvas = Canvas(cells * cell, cells * cell, floor)
    for i in range(cells + 1):
        canvas.line(i * cell, 0, i * cell, cells * cell, line_width, lines)
        canvas.line(0, i * cell, cells * cell, i * cell, line_width, lines)
    return canvas, cell
