"""Small PNG charts drawn with OpenCV (no plotting dependency): line plots and histograms.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

COLORS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]


FONT = cv2.FONT_HERSHEY_SIMPLEX


def _ticks(lo: float, hi: float, n: int = 5) -> np.ndarray:
    return np.linspace(lo, hi, n)


def _fmt(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 100 or v == int(v) else f"{v:.3g}"


class Canvas:
    """A white RGB image with a plotting area and data -> pixel mapping."""

    def __init__(self, title: str, xlabel: str, ylabel: str, xlim, ylim, size=(640, 400)):
        self.w, self.h = size
        self.img = np.full((self.h, self.w, 3), 255, np.uint8)
        self.left, self.right, self.top, self.bottom = 70, 20, 40, 50
        (x0, x1), (y0, y1) = xlim, ylim
        if x1 <= x0:
            x0, x1 = x0 - 1, x1 + 1
        if y1 <= y0:
            y0, y1 = y0 - 1, y1 + 1
        self.xlim, self.ylim = (x0, x1), (y0, y1)
        cv2.putText(self.img, title, (self.left, 25), FONT, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(self.img, xlabel, (self.w // 2 - 4 * len(xlabel), self.h - 10), FONT, 0.45, (0, 0, 0), 1,
                    cv2.LINE_AA)
        cv2.putText(self.img, ylabel, (5, self.top - 8), FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.rectangle(self.img, (self.left, self.top), (self.w - self.right, self.h - self.bottom), (0, 0, 0), 1)
        for x in _ticks(*self.xlim):
            px = self.px(x, y0)[0]
            cv2.line(self.img, (px, self.h - self.bottom), (px, self.h - self.bottom + 4), (0, 0, 0), 1)
            cv2.putText(self.img, _fmt(x), (px - 12, self.h - self.bottom + 18), FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        for y in _ticks(*self.ylim):
            py = self.px(x0, y)[1]
            cv2.line(self.img, (self.left - 4, py), (self.left, py), (0, 0, 0), 1)
            cv2.line(self.img, (self.left, py), (self.w - self.right, py), (225, 225, 225), 1)
            cv2.putText(self.img, _fmt(y), (5, py + 4), FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)

    def px(self, x: float, y: float) -> tuple[int, int]:
        (x0, x1), (y0, y1) = self.xlim, self.ylim
        fx = (x - x0) / (x1 - x0)
        fy = (y - y0) / (y1 - y0)
        return (int(round(self.left + fx * (self.w - self.left - self.right))),
                int(round(self.h - self.bottom - fy * (self.h - self.top - self.bottom))))

    def vline(self, x: float, label: str) -> None:
        """A dashed grey vertical at data ``x``, labelled at its top."""
        px = self.px(x, self.ylim[0])[0]
        for y in range(self.top, self.h - self.bottom, 8):
            cv2.line(self.img, (px, y), (px, min(y + 4, self.h - self.bottom)), (120, 120, 120), 1)
        cv2.putText(self.img, label, (px + 3, self.top + 12), FONT, 0.4, (90, 90, 90), 1, cv2.LINE_AA)

    def legend(self, names: list[str]) -> None:
        for i, name in enumerate(names):
            y = self.top + 15 + 16 * i
            x = self.w - self.right - 170
            cv2.line(self.img, (x, y - 4), (x + 20, y - 4), COLORS[i % len(COLORS)], 2)
            cv2.putText(self.img, name, (x + 26, y), FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)

    def save(self, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), cv2.cvtColor(self.img, cv2.COLOR_RGB2BGR))
        return path


def line_plot(path: Path, series: dict[str, tuple[list[float], list[float]]], title: str, xlabel: str,
              ylabel: str, marks: dict[float, str] | None = None) -> Path:
    """One line (with dots) per named ``(x, y)`` series; ``marks`` {x: label} are dashed verticals
    (where a round began)."""
    series = {k: (np.asarray(x, float), np.asarray(y, float)) for k, (x, y) in series.items() if len(x)}
    xs = np.concatenate([x for x, _ in series.values()]) if series else np.zeros(1)
    ys = np.concatenate([y for _, y in series.values()]) if series else np.zeros(1)
    ys = ys[np.isfinite(ys)] if np.isfinite(ys).any() else np.zeros(1)
    canvas = Canvas(title, xlabel, ylabel, (xs.min(), xs.max()), (ys.min(), ys.max()))
    for x, label in (marks or {}).items():
        canvas.vline(x, label)
    for i, (x, y) in enumerate(series.values()):
        color = COLORS[i % len(COLORS)]
        points = [canvas.px(a, b) for a, b in zip(x, y) if np.isfinite(b)]
        for p, q in zip(points, points[1:]):
            cv2.line(canvas.img, p, q, color, 2, cv2.LINE_AA)
        for p in points:
            cv2.circle(canvas.img, p, 3, color, -1, cv2.LINE_AA)
    canvas.legend(list(series))
    return canvas.save(path)


def histogram(path: Path, values: dict[str, list[float]], title: str, xlabel: str, bins: int = 20) -> Path:
    """Overlaid histograms (outlined bars) of named samples on shared bins."""
    values = {k: np.asarray(v, float) for k, v in values.items() if len(v)}
    allv = np.concatenate(list(values.values())) if values else np.zeros(1)
    edges = np.linspace(allv.min(), allv.max() if allv.max() > allv.min() else allv.min() + 1, bins + 1)
    counts = {k: np.histogram(v, edges)[0] for k, v in values.items()}
    top = max([int(c.max()) for c in counts.values()] + [1])
    canvas = Canvas(title, xlabel, "episodes", (edges[0], edges[-1]), (0, top))
    for i, c in enumerate(counts.values()):
        color = COLORS[i % len(COLORS)]
        for j, n in enumerate(c):
            if n:
                cv2.rectangle(canvas.img, canvas.px(edges[j], 0), canvas.px(edges[j + 1], n), color, 2)
    canvas.legend(list(counts))
    return canvas.save(path)
