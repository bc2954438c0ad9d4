"""Minimal SVG charts: time-series lines (min/max-bucket downsampled), bars, markers."""

from datetime import datetime, timezone
from html import escape

import numpy as np

W, H = 1100, 260
ML, MR, MT, MB = 70, 20, 28, 34  # margins


def _fmt_day(ms) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d")


def _downsample(x, y, max_points):
    """Keep each bucket's min and max so spikes and drawdowns stay visible."""
    n = len(x)
    if n <= max_points:
        return x, y
    nb = max_points // 2
    edges = np.linspace(0, n, nb + 1).astype(int)
    xs, ys = [], []
    for a, b in zip(edges[:-1], edges[1:]):
        if b <= a:
            continue
        seg = y[a:b]
        if np.all(np.isnan(seg)):
            continue
        i, j = a + int(np.nanargmin(seg)), a + int(np.nanargmax(seg))
        for k in sorted((i, j)):
            xs.append(x[k])
            ys.append(y[k])
    return np.asarray(xs), np.asarray(ys)


class Chart:
    def __init__(self, title, x0, x1, y0, y1, ylabel="", yfmt="{:,.0f}"):
        if not np.isfinite(y0) or not np.isfinite(y1):
            y0, y1 = 0.0, 1.0
        if y1 <= y0:
            y0, y1 = y0 - 1.0, y1 + 1.0
        pad = (y1 - y0) * 0.05
        self.x0, self.x1 = float(x0), float(max(x1, x0 + 1))
        self.y0, self.y1 = y0 - pad, y1 + pad
        self.parts = [f'<text x="{ML}" y="18" class="title">{escape(title)}</text>']
        self.ylabel, self.yfmt = ylabel, yfmt

    def sx(self, x):
        return ML + (np.asarray(x, float) - self.x0) / (self.x1 - self.x0) * (W - ML - MR)

    def sy(self, y):
        return MT + (self.y1 - np.asarray(y, float)) / (self.y1 - self.y0) * (H - MT - MB)

    def axes(self):
        p = self.parts
        p.append(f'<rect x="{ML}" y="{MT}" width="{W - ML - MR}" height="{H - MT - MB}" class="frame"/>')
        for v in np.linspace(self.y0, self.y1, 5):
            y = self.sy(v)
            p.append(f'<line x1="{ML}" x2="{W - MR}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
            p.append(f'<text x="{ML - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">{self.yfmt.format(v)}</text>')
        for v in np.linspace(self.x0, self.x1, 6):
            x = self.sx(v)
            p.append(f'<text x="{x:.1f}" y="{H - 12}" class="tick" text-anchor="middle">{_fmt_day(v)}</text>')
        if self.ylabel:
            p.append(f'<text x="14" y="{MT + (H - MT - MB) / 2}" class="tick" '
                     f'transform="rotate(-90 14 {MT + (H - MT - MB) / 2})" text-anchor="middle">{escape(self.ylabel)}</text>')
        return self

    def line(self, x, y, cls="line", max_points=2400):
        x, y = _downsample(np.asarray(x, float), np.asarray(y, float), max_points)
        ok = np.isfinite(y)
        if not ok.any():
            return self
        pts = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(self.sx(x[ok]), self.sy(y[ok])))
        self.parts.append(f'<polyline points="{pts}" class="{cls}"/>')
        return self

    def hline(self, y, cls="ref"):
        yy = self.sy(y)
        self.parts.append(f'<line x1="{ML}" x2="{W - MR}" y1="{yy:.1f}" y2="{yy:.1f}" class="{cls}"/>')
        return self

    def markers(self, x, y, cls, shape="circle", title=None):
        for i, (a, b) in enumerate(zip(self.sx(x), self.sy(y))):
            tip = f"<title>{escape(title[i])}</title>" if title is not None else ""
            if shape == "circle":
                self.parts.append(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3" class="{cls}">{tip}</circle>')
            else:
                self.parts.append(f'<path d="M{a - 3:.1f},{b - 3:.1f}L{a + 3:.1f},{b + 3:.1f}M{a - 3:.1f},{b + 3:.1f}'
                                  f'L{a + 3:.1f},{b - 3:.1f}" class="{cls}">{tip}</path>')
        return self

    def bars(self, x, y, width_ms):
        zero = self.sy(0.0)
        wpx = max(1.0, float(self.sx(self.x0 + width_ms) - self.sx(self.x0)) * 0.8)
        for a, v in zip(self.sx(x), y):
            yy = self.sy(v)
            top, h = (yy, zero - yy) if v >= 0 else (zero, yy - zero)
            cls = "pos" if v >= 0 else "neg"
            self.parts.append(f'<rect x="{a - wpx / 2:.1f}" y="{top:.1f}" width="{wpx:.1f}" height="{max(h, 0.5):.1f}" class="{cls}"/>')
        return self

    def svg(self) -> str:
        return f'<svg viewBox="0 0 {W} {H}" xmlns="http://www.w3.org/2000/svg" role="img">{"".join(self.parts)}</svg>'
