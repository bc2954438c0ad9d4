"""Equity curves as inline SVG, drawn with the report's chart code (``dolphin.report.svg``): no CDN, no script."""

from datetime import datetime, timezone
from html import escape

import numpy as np

from dolphin.report import svg

H = 200


def _tick(ms: float, span_ms: float) -> str:
    t = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    if span_ms <= 2 * 3_600_000:
        return t.strftime("%H:%M:%S")
    return t.strftime("%m-%d %H:%M" if span_ms <= 2 * 86_400_000 else "%Y-%m-%d")


class TimeChart(svg.Chart):
    """The report's chart with time-of-day ticks for intraday spans (the report's are whole days)."""

    def axes(self):
        p = self.parts
        W, ML, MR, MT, MB = svg.W, svg.ML, svg.MR, svg.MT, svg.MB
        p.append(f'<rect x="{ML}" y="{MT}" width="{W - ML - MR}" height="{svg.H - MT - MB}" class="frame"/>')
        for v in np.linspace(self.y0, self.y1, 5):
            y = self.sy(v)
            p.append(f'<line x1="{ML}" x2="{W - MR}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
            p.append(f'<text x="{ML - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">{self.yfmt.format(v)}</text>')
        span = self.x1 - self.x0
        xs = np.linspace(self.x0, self.x1, 6)
        for i, v in enumerate(xs):
            anchor = "end" if i == len(xs) - 1 else "middle"  # the last label would run off the frame
            p.append(f'<text x="{self.sx(v):.1f}" y="{svg.H - 12}" class="tick" text-anchor="{anchor}">'
                     f'{escape(_tick(v, span))}</text>')
        return self


def equity_svg(title: str, points, ylabel: str = "USDT") -> str:
    """``points``: [(epoch ms, equity)] in time order. An empty series gives a titled frame saying so."""
    if not points:
        return (f'<svg viewBox="0 0 {svg.W} 60" xmlns="http://www.w3.org/2000/svg" role="img">'
                f'<text x="{svg.ML}" y="18" class="title">{escape(title)}</text>'
                f'<text x="{svg.ML}" y="44" class="tick">no data yet</text></svg>')
    x = np.array([p[0] for p in points], dtype=float)
    y = np.array([p[1] for p in points], dtype=float)
    if len(x) == 1:  # one point: a flat line across a minute so it is visible
        x, y = np.array([x[0] - 60_000, x[0]]), np.array([y[0], y[0]])
    c = TimeChart(title, x[0], x[-1], float(np.nanmin(y)), float(np.nanmax(y)), ylabel, "{:,.2f}").axes()
    # a step line: capital changes at events and stays flat between them
    xs = np.repeat(x, 2)[1:]
    ys = np.repeat(y, 2)[:-1]
    c.line(xs, ys).hline(float(y[0]), cls="ref").markers(x[-1:], y[-1:], cls="last")
    return c.svg()
