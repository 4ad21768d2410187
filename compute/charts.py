"""Server-side SVG charts for job results: a loss curve, ROC curves and bars. Pure: no Django.

Every label is escaped; the markup needs no script and no external file, so the pages
work offline and under a strict content security policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

W, H, PAD = 520, 260, 44
COLOURS = ("#2563eb", "#d97706", "#16a34a", "#9333ea")


def _frame(title: str, body: str, ident: str) -> str:
    return (
        f'<svg id="{escape(ident)}" class="chart" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
        f'<rect x="0" y="0" width="{W}" height="{H}" fill="#fff"/>{body}</svg>'
    )


def _axes(x_label: str, y_label: str, y_max: float, y_min: float = 0.0) -> str:
    out = [
        f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - 10}" y2="{H - PAD}" stroke="#888"/>',
        f'<line x1="{PAD}" y1="10" x2="{PAD}" y2="{H - PAD}" stroke="#888"/>',
        f'<text x="{(W + PAD) / 2}" y="{H - 8}" text-anchor="middle" font-size="12">{escape(x_label)}</text>',
        f'<text x="12" y="{H / 2}" text-anchor="middle" font-size="12" transform="rotate(-90 12 {H / 2})">'
        f"{escape(y_label)}</text>",
    ]
    for k in range(5):
        v = y_min + (y_max - y_min) * k / 4
        y = _y(v, y_max, y_min)
        out.append(f'<text x="{PAD - 4}" y="{y + 4:.1f}" text-anchor="end" font-size="10">{v:.2f}</text>')
    return "".join(out)


def _x(i: float, n: float) -> float:
    return PAD + (W - 10 - PAD) * (i / n if n else 0)


def _y(v: float, y_max: float, y_min: float = 0.0) -> float:
    span = (y_max - y_min) or 1.0
    return H - PAD - (H - PAD - 10) * (v - y_min) / span


def _legend(names: Sequence[str]) -> str:
    return "".join(
        f'<rect x="{W - 150}" y="{14 + 16 * i}" width="10" height="10" fill="{COLOURS[i % 4]}"/>'
        f'<text x="{W - 135}" y="{23 + 16 * i}" font-size="11">{escape(n)}</text>'
        for i, n in enumerate(names)
    )


def lines(series: dict[str, Sequence[float]], *, title: str, x_label: str, y_label: str, ident: str) -> str:
    """Line chart of one or more series over 1..n (e.g. log-loss per epoch)."""
    values = [v for s in series.values() for v in s]
    if not values:
        return _frame(title, "", ident)
    top = max(values) * 1.1 or 1.0
    n = max(len(s) for s in series.values())
    body = [_axes(x_label, y_label, top)]
    for i, (name, s) in enumerate(series.items()):
        pts = " ".join(f"{_x(k + 1, n):.1f},{_y(v, top):.1f}" for k, v in enumerate(s))
        body.append(
            f'<polyline fill="none" stroke="{COLOURS[i % 4]}" stroke-width="2" points="{pts}" data-series="{escape(name)}"/>'  # noqa: E501
        )  # noqa: E501
        body.extend(
            f'<circle cx="{_x(k + 1, n):.1f}" cy="{_y(v, top):.1f}" r="3" fill="{COLOURS[i % 4]}"/>'
            for k, v in enumerate(s)
        )  # noqa: E501
    for k in range(1, n + 1):
        body.append(f'<text x="{_x(k, n):.1f}" y="{H - PAD + 14}" text-anchor="middle" font-size="10">{k}</text>')
    body.append(_legend(list(series)))
    return _frame(title, "".join(body), ident)


def roc(curves: dict[str, dict[str, Sequence[float]]], *, title: str, ident: str) -> str:
    """ROC curves (false positive rate → true positive rate) with the diagonal of chance."""
    body = [_axes("false positive rate", "true positive rate", 1.0)]
    body.append(
        f'<line x1="{_x(0, 1)}" y1="{_y(0, 1)}" x2="{_x(1, 1)}" y2="{_y(1, 1)}" stroke="#ccc" stroke-dasharray="4"/>'
    )  # noqa: E501
    for i, (name, c) in enumerate(curves.items()):
        pts = " ".join(f"{_x(f, 1):.1f},{_y(t, 1):.1f}" for f, t in zip(c["fpr"], c["tpr"], strict=True))
        body.append(
            f'<polyline fill="none" stroke="{COLOURS[i % 4]}" stroke-width="2" points="{pts}" data-series="{escape(name)}"/>'  # noqa: E501
        )  # noqa: E501
    body.append(_legend(list(curves)))
    return _frame(title, "".join(body), ident)


def bars(values: dict[str, float], *, title: str, y_label: str, ident: str, y_min: float = 0.0) -> str:
    """Vertical bars with their values written above them."""
    if not values:
        return _frame(title, "", ident)
    top = max(max(values.values()) * 1.05, y_min + 1e-6)
    body = [_axes("", y_label, top, y_min)]
    n = len(values)
    slot = (W - 10 - PAD) / n
    for i, (name, v) in enumerate(values.items()):
        x = PAD + slot * i + slot * 0.2
        y = _y(max(v, y_min), top, y_min)
        body.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{slot * 0.6:.1f}" height="{H - PAD - y:.1f}" '
            f'fill="{COLOURS[i % 4]}" data-label="{escape(name)}" data-value="{v:.4f}"/>'
            f'<text x="{x + slot * 0.3:.1f}" y="{y - 4:.1f}" text-anchor="middle" font-size="11">{v:.3f}</text>'
            f'<text x="{x + slot * 0.3:.1f}" y="{H - PAD + 14}" text-anchor="middle" font-size="10">{escape(name)}</text>'  # noqa: E501
        )
    return _frame(title, "".join(body), ident)


def spending(
    points: Sequence[tuple[float, float]], *, budget: float | None, title: str, ident: str, x_labels: Sequence[str]
) -> str:
    """Cumulative spending over time as a step line, with the budget as a dashed line (if any).

    ``points``: (time as a fraction of the span shown, 0..1; cumulative amount), in time order.
    ``x_labels``: the span's first and last dates."""
    top = max([budget or 0.0, *(v for _, v in points)]) * 1.1 or 1.0
    body = [_axes("time (UTC)", "ε spent", top)]
    if budget is not None:
        y = _y(budget, top)
        body.append(
            f'<line x1="{PAD}" y1="{y:.1f}" x2="{W - 10}" y2="{y:.1f}" stroke="#dc2626" stroke-dasharray="6 4" '
            f'data-budget="{budget:.3f}"/><text x="{W - 12}" y="{y - 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="#dc2626">budget ε {budget:g}</text>'
        )
    if points:
        xy, last = [f"{_x(0, 1):.1f},{_y(0, top):.1f}"], 0.0
        for t, v in points:
            xy += [f"{_x(t, 1):.1f},{_y(last, top):.1f}", f"{_x(t, 1):.1f},{_y(v, top):.1f}"]
            last = v
        xy.append(f"{_x(1, 1):.1f},{_y(last, top):.1f}")
        body.append(
            f'<polyline fill="none" stroke="{COLOURS[0]}" stroke-width="2" points="{" ".join(xy)}" '
            f'data-series="spent" data-last="{last:.3f}"/>'
        )
    for i, label in enumerate(x_labels[:2]):
        anchor = "start" if i == 0 else "end"
        body.append(
            f'<text x="{_x(i, 1):.1f}" y="{H - PAD + 14}" text-anchor="{anchor}" font-size="10">{escape(label)}</text>'
        )
    return _frame(title, "".join(body), ident)


def heatmap(names: Sequence[str], matrix: Sequence[Sequence[float | None]], *, title: str, ident: str) -> str:
    """A correlation matrix as coloured cells in [-1, 1] (blue negative, orange positive), values written in."""
    k = len(names)
    if not k:
        return _frame(title, "", ident)
    left, top = 130, 20
    cell = min((W - left - 10) / k, (H - top - 40) / k)
    body = []
    for i, row in enumerate(matrix):
        y = top + cell * i
        body.append(
            f'<text x="{left - 6}" y="{y + cell / 2 + 4:.1f}" text-anchor="end" font-size="10">'
            f"{escape(names[i])}</text>"
        )
        for j, v in enumerate(row):
            x = left + cell * j
            if v is None:
                fill, label = "#eee", "—"
            else:
                strength = int(255 - 180 * min(abs(v), 1.0))
                fill = f"rgb({strength},{strength},255)" if v < 0 else f"rgb(255,{strength},{max(strength - 60, 0)})"
                label = f"{v:.2f}"
            body.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{cell:.1f}" height="{cell:.1f}" fill="{fill}" stroke="#fff" '
                f'data-row="{escape(names[i])}" data-col="{escape(names[j])}" data-value="{label}"/>'
                f'<text x="{x + cell / 2:.1f}" y="{y + cell / 2 + 4:.1f}" text-anchor="middle" font-size="10">{label}</text>'  # noqa: E501
            )
    for j, name in enumerate(names):
        x = left + cell * j + cell / 2
        body.append(
            f'<text x="{x:.1f}" y="{top + cell * k + 14:.1f}" text-anchor="middle" font-size="10">{escape(name)}</text>'
        )
    return _frame(title, "".join(body), ident)


def hbars(values: dict[str, float], *, title: str, ident: str) -> str:
    """Ranked horizontal bars for signed values (e.g. coefficients): length |v|, orange positive, blue
    negative, the name at the left and the value at the bar's end."""
    if not values:
        return _frame(title, "", ident)
    left, row = 170, (H - 30) / len(values)
    reach = max(abs(v) for v in values.values()) or 1.0
    body = [f'<text x="{W / 2}" y="14" text-anchor="middle" font-size="12">{escape(title)}</text>']
    for i, (name, v) in enumerate(values.items()):
        y = 22 + row * i
        width = (W - left - 60) * abs(v) / reach
        colour = COLOURS[1] if v >= 0 else COLOURS[0]
        body.append(
            f'<text x="{left - 6}" y="{y + row * 0.65:.1f}" text-anchor="end" font-size="10">{escape(name)}</text>'
            f'<rect x="{left}" y="{y + row * 0.15:.1f}" width="{width:.1f}" height="{row * 0.7:.1f}" fill="{colour}" '
            f'data-label="{escape(name)}" data-value="{v:.4f}"/>'
            f'<text x="{left + width + 4:.1f}" y="{y + row * 0.65:.1f}" font-size="10">{v:+.3f}</text>'
        )
    return _frame(title, "".join(body), ident)
