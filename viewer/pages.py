"""The HTML form of the OGC API (``f=html``): which form a request asks for, and the pages.

A request asks by ``f=json|html``; without ``f``, by its ``Accept`` header (a browser's
``text/html`` ranked above JSON gets HTML, anything else JSON); ``f`` wins over ``Accept``, and
an ``f`` of any other value is a 400. The pages are Jinja2 templates in ``viewer/templates/``
with autoescaping on, since feature properties and names come from the user's files; each is
self-contained (inline CSS, an inline SVG sketch of the geometry, nothing fetched from
anywhere) and names its JSON twin in a ``<link rel="alternate">``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

import jinja2
import shapely
from fastapi import Query, Request
from fastapi.responses import HTMLResponse
from shapely.geometry.base import BaseGeometry

from cim.errors import UsageError

Format = Literal["json", "html"]
FORMATS: tuple[Format, ...] = ("json", "html")
HTML_TYPES = ("text/html", "application/xhtml+xml")
JSON_TYPES = ("application/json", "application/geo+json", "application/*", "*/*")

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,  # every value may come from a user's file
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _value(v: Any) -> str:
    """A property value as text: nested values as compact JSON, None as empty."""
    if v is None:
        return ""
    if isinstance(v, dict | list):
        return json.dumps(v, ensure_ascii=False, default=str)
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


_env.filters["value"] = _value


def _q(part: str) -> float:
    """The ``q`` of one media range (1 without one; 0 when it is not a number in 0..1)."""
    for param in part.split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "q":
            try:
                q = float(value)
            except ValueError:
                return 0.0
            return q if 0.0 <= q <= 1.0 else 0.0
    return 1.0


def prefers_html(accept: str) -> bool:
    """Whether an ``Accept`` header ranks HTML above JSON (a tie, or no header, is JSON)."""
    html = js = 0.0
    for part in accept.split(","):
        media = part.split(";")[0].strip().lower()
        if media in HTML_TYPES or media == "text/*":
            html = max(html, _q(part))
        elif media in JSON_TYPES:
            js = max(js, _q(part))
    return html > js


def output_format(
    request: Request,
    f: str | None = Query(
        None,
        description="`json` or `html`. Without it the `Accept` header chooses: `text/html` "
        "ranked above JSON (a browser) gets HTML, anything else JSON. Any other value is a 400.",
    ),
) -> Format:
    """A dependency: the form the request asks for."""
    if f is None:
        return "html" if prefers_html(request.headers.get("accept", "")) else "json"
    for known in FORMATS:
        if f == known:
            return known
    raise UsageError(f"f={f!r}: this API answers in f=json or f=html")


def render(template: str, json_href: str, json_type: str, **context: Any) -> HTMLResponse:
    """One page, with the link to its JSON form; varies by ``Accept`` like its JSON twin."""
    body = _env.get_template(template).render(json_href=json_href, json_type=json_type, **context)
    return HTMLResponse(body, headers={"Vary": "Accept"})


# ---- a sketch of the geometry (inline SVG: no map tiles, nothing fetched) -------------------
SKETCH_W, SKETCH_H, SKETCH_PAD = 480, 320, 8


def _rings(g: BaseGeometry) -> list[Any]:
    if g.geom_type == "Polygon":
        return [g.exterior.coords, *(r.coords for r in g.interiors)]
    if g.geom_type in ("LineString", "LinearRing"):
        return [g.coords]
    if hasattr(g, "geoms"):
        return [r for part in g.geoms for r in _rings(part)]
    return []


def sketch(shapes: list[tuple[str, str, BaseGeometry]]) -> list[dict[str, Any]]:
    """SVG shapes of CRS84 geometries, each with its link and label, scaled together into the
    sketch's box (east to the right, north up; longitudes shrunk by the cosine of the latitude).
    ``[{"href", "label", "kind": "path"|"point", "d" | "cx","cy"}]``; empty when none is left."""
    live = [(href, label, g) for href, label, g in shapes if g is not None and not g.is_empty]
    if not live:
        return []
    x0, y0, x1, y1 = shapely.total_bounds([g for _, _, g in live])
    k = math.cos(math.radians((y0 + y1) / 2))
    w, h = max((x1 - x0) * k, 1e-9), max(y1 - y0, 1e-9)
    scale = min((SKETCH_W - 2 * SKETCH_PAD) / w, (SKETCH_H - 2 * SKETCH_PAD) / h)

    def px(x: float, y: float) -> tuple[float, float]:
        return (
            round(SKETCH_PAD + (x - x0) * k * scale, 1),
            round(SKETCH_H - SKETCH_PAD - (y - y0) * scale, 1),
        )

    out: list[dict[str, Any]] = []
    for href, label, g in live:
        if g.geom_type in ("Point", "MultiPoint"):
            for p in getattr(g, "geoms", [g]):
                cx, cy = px(p.x, p.y)
                out.append({"href": href, "label": label, "kind": "point", "cx": cx, "cy": cy})
            continue
        parts = []
        for ring in _rings(g):
            pts = [px(x, y) for x, y, *_ in ring]
            closed = "Z" if g.geom_type in ("Polygon", "MultiPolygon") else ""
            parts.append("M" + "L".join(f"{a},{b}" for a, b in pts) + closed)
        filled = g.geom_type in ("Polygon", "MultiPolygon")
        out.append(
            {"href": href, "label": label, "kind": "path", "d": " ".join(parts), "filled": filled}
        )
    return out
