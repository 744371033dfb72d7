"""The layout of the sample district: a street grid at Tongliao and what stands in each block.

Everything is drawn from one ``numpy`` generator seeded with ``SEED``, in the project CRS
(EPSG:4550, metres), in a fixed order: the same seed gives the same district. The grid's
blocks are 120 x 100 m between road centrelines; each block is a residential compound (rows of
east-west slabs, the north-China pattern), a commercial, public or industrial block, a park,
a vacant lot, or holds one of the three IFC buildings on a free plot beside footprints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from pyproj import Transformer

SEED = 29
CRS = "EPSG:4550"
#: the district's centre (lon, lat): the Horqin district of Tongliao
CENTRE = (122.26, 43.62)
#: the grid: columns and rows of blocks, a block's size between road centrelines (m)
COLUMNS, ROWS = 6, 5
BLOCK_W, BLOCK_D = 120.0, 100.0
#: from a road's centreline to the edge of a block (half the road and the pavement, m)
SETBACK = 12.0
STOREY_M = 3.0
#: the roof pitch of the gabled buildings (degrees)
PITCH_DEG = 25.0

COMPOUNDS = (
    *("和平小区", "民主小区", "科尔沁花园", "明仁小区", "建国小区", "团结小区"),
    *("新城花园", "永清小区", "铁南小区", "西门小区", "胜利小区", "育新小区"),
)
#: blocks by (column, row) that are not drawn at random
SPECIAL = {
    (2, 2): "tower",
    (3, 2): "school",
    (2, 1): "civic",
    (4, 3): "park",
    (0, 0): "park",
    (5, 0): "vacant",
    (5, 4): "industrial",
    (0, 4): "industrial",
}


@dataclass
class Feature:
    geometry: Any  # shapely, project CRS
    fields: dict[str, Any]


@dataclass
class Plot:
    """A free plot for an IFC building: its south-west corner (E, N) and size (m)."""

    name: str
    origin: tuple[float, float]
    size: tuple[float, float]
    height: float  # to the top of the roof (m), for the LiDAR roof over it

    @property
    def footprint(self) -> Any:
        (x, y), (w, d) = self.origin, self.size
        return shapely.box(x, y, x + w, y + d)


@dataclass
class District:
    buildings: list[Feature] = field(default_factory=list)
    roads: list[Feature] = field(default_factory=list)
    landcover: list[Feature] = field(default_factory=list)
    parks: list[Feature] = field(default_factory=list)
    pois: list[Feature] = field(default_factory=list)
    boundary: list[Feature] = field(default_factory=list)
    plots: dict[str, Plot] = field(default_factory=dict)
    lidar_extent: Any = None  # shapely box: where the point cloud is sampled


def centre_xy() -> tuple[float, float]:
    to_xy = Transformer.from_crs("EPSG:4326", CRS, always_xy=True)
    x, y = to_xy.transform(*CENTRE)
    return round(x, 1), round(y, 1)


def _block_kind(rng: np.random.Generator, col: int, row: int) -> str:
    if (col, row) in SPECIAL:
        return SPECIAL[(col, row)]
    draw = rng.random()
    return "commercial" if draw < 0.15 else "public" if draw < 0.25 else "residential"


def plan(seed: int = SEED) -> District:
    """The district: its blocks' buildings and the layers around them."""
    rng = np.random.default_rng(seed)
    cx, cy = centre_xy()
    x0, y0 = cx - COLUMNS * BLOCK_W / 2, cy - ROWS * BLOCK_D / 2
    d = District()
    compounds = iter((*COMPOUNDS, *(f"{c}二期" for c in COMPOUNDS)))
    for row in range(ROWS):
        for col in range(COLUMNS):
            kind = _block_kind(rng, col, row)
            bx, by = x0 + col * BLOCK_W, y0 + row * BLOCK_D
            block = shapely.box(
                bx + SETBACK, by + SETBACK, bx + BLOCK_W - SETBACK, by + BLOCK_D - SETBACK
            )
            _fill_block(d, rng, kind, block, next(compounds) if kind == "residential" else "")
    _roads(d, x0, y0)
    _open_space(d, x0, y0)
    extent = shapely.box(cx - 210.0, cy - 170.0, cx + 210.0, cy + 170.0)
    d.lidar_extent = extent
    return d


def _fill_block(
    d: District, rng: np.random.Generator, kind: str, block: Any, compound: str
) -> None:
    xmin, ymin, xmax, ymax = block.bounds
    if kind in ("tower", "school", "civic"):
        _ifc_block(d, rng, kind, block)
    elif kind == "residential":
        rows = int(rng.integers(3, 5))
        depth = 12.0
        gap = (ymax - ymin - rows * depth) / rows
        n = 0
        for r in range(rows):
            y = ymin + gap / 2 + r * (depth + gap)
            for left, right in ((xmin + 4.0, xmin + 44.0), (xmin + 52.0, xmax - 4.0)):
                length = float(rng.uniform(30.0, right - left))
                n += 1
                foot = shapely.box(left, y, left + length, y + depth)
                d.buildings.append(_residential(rng, foot, f"{compound} {n}号楼"))
        lane = shapely.LineString([(xmin + 48.0, ymin - SETBACK), (xmin + 48.0, ymax)])
        d.roads.append(Feature(lane, {"highway": "residential", "name": f"{compound}内路"}))
        d.landcover.append(_green_between(d, block))
        if rng.random() < 0.5:
            amenity = ("kindergarten", "elderly_care", "grocery")[int(rng.integers(3))]
            _poi(d, block, amenity, f"{compound}{_AMENITY_ZH[amenity]}")
    elif kind in ("commercial", "public"):
        count = int(rng.integers(2, 5))
        width = (xmax - xmin) / count
        for k in range(count):
            w, dep = float(rng.uniform(0.5, 0.85) * width), float(rng.uniform(25.0, 55.0))
            left = xmin + k * width + (width - w) / 2
            foot = shapely.box(left, ymin + 4.0, left + w, ymin + 4.0 + dep)
            d.buildings.append(_non_residential(rng, foot, kind, len(d.buildings)))
        d.landcover.append(Feature(_free(d, block), {"landcover": "paved", "name": ""}))
        amenity = "grocery" if kind == "commercial" else "clinic"
        _poi(d, block, amenity, f"{_AMENITY_ZH[amenity]} {len(d.pois) + 1}")
    elif kind == "industrial":
        for k in range(2):
            left = xmin + 6.0 + k * 48.0
            foot = shapely.box(left, ymin + 10.0, left + 40.0, ymin + 60.0)
            d.buildings.append(_non_residential(rng, foot, "industrial", len(d.buildings)))
        d.landcover.append(Feature(_free(d, block), {"landcover": "bare", "name": ""}))
    elif kind == "park":
        name = "西拉木伦公园" if not d.parks else "科尔沁公园"
        d.parks.append(Feature(block, {"name": name}))
        pond = shapely.Point(block.centroid.x, block.centroid.y).buffer(22.0, quad_segs=8)
        d.landcover.append(Feature(block.difference(pond), {"landcover": "green", "name": name}))
        d.landcover.append(Feature(pond, {"landcover": "water", "name": f"{name}湖"}))
        _poi(d, block, "sports", f"{name}健身场")
    else:  # vacant
        d.landcover.append(Feature(block, {"landcover": "bare", "name": "待建地块"}))


_AMENITY_ZH = {
    "kindergarten": "幼儿园",
    "primary_school": "小学",
    "clinic": "社区卫生服务站",
    "grocery": "便民超市",
    "elderly_care": "日间照料中心",
    "sports": "健身场",
}


def _poi(d: District, block: Any, amenity: str, name: str) -> None:
    """A facility at the block's south-east corner (inside, off the buildings)."""
    _, ymin, xmax, _ = block.bounds
    d.pois.append(
        Feature(shapely.Point(xmax - 3.0, ymin + 2.0), {"amenity": amenity, "name": name})
    )


def _gable(rng: np.random.Generator, floors: int, year: int) -> bool:
    return floors <= 3 or (year < 1995 and rng.random() < 0.3)


def _star_and_energy(rng: np.random.Generator, year: int) -> dict[str, int]:
    """Green-building stars, ultra-low-energy and retrofits, likelier on newer buildings (and
    retrofits on older ones)."""
    star = int(rng.choice([0, 1, 2, 3], p=[0.2, 0.45, 0.25, 0.1])) if year >= 2013 else 0
    ultra = int(year >= 2019 and rng.random() < 0.35)
    retrofit = int(year < 2005 and rng.random() < 0.4)
    return {"green_star": star, "ultra_low_energy": ultra, "energy_retrofit": retrofit}


def _fields(
    rng: np.random.Generator, foot: Any, floors: int, use: str, name: str, year: int
) -> dict[str, Any]:
    gable = _gable(rng, floors, year)
    xmin, ymin, xmax, ymax = foot.bounds
    eaves = floors * STOREY_M
    rise = min(xmax - xmin, ymax - ymin) / 2 * np.tan(np.radians(PITCH_DEG)) if gable else 0.0
    return {
        "name": name,
        "use": use,
        "floors": floors,
        "height": round(eaves + rise, 2),
        "year": year,
        **_star_and_energy(rng, year),
        "roof": "gable" if gable else "flat",
    }


def _residential(rng: np.random.Generator, foot: Any, name: str) -> Feature:
    floors = int(rng.choice([3, 6, 6, 7, 11, 18]))
    year = int(rng.integers(1985, 2025))
    return Feature(foot, _fields(rng, foot, floors, "residential", name, year))


def _non_residential(rng: np.random.Generator, foot: Any, use: str, k: int) -> Feature:
    floors = 1 if use == "industrial" else int(rng.integers(2, 9))
    year = int(rng.integers(1980, 2025))
    zh = {"commercial": "商业楼", "public": "办公楼", "industrial": "厂房"}[use]
    return Feature(foot, _fields(rng, foot, floors, use, f"{zh} {k + 1}", year))


def _free(d: District, block: Any) -> Any:
    """The block without the footprints (and plots) in it."""
    taken = [b.geometry for b in d.buildings] + [p.footprint for p in d.plots.values()]
    return block.difference(shapely.union_all(taken)) if taken else block


def _green_between(d: District, block: Any) -> Feature:
    return Feature(_free(d, block), {"landcover": "green", "name": ""})


def _ifc_block(d: District, rng: np.random.Generator, kind: str, block: Any) -> None:
    """A free plot for the IFC building (in the block's middle), footprints on its west side."""
    xmin, ymin, _, _ = block.bounds
    if kind == "tower":
        plot = Plot("tower", (xmin + 60.0, ymin + 30.0), (8.4, 6.4), 27.0)
    elif kind == "school":
        plot = Plot("school", (xmin + 40.0, ymin + 20.0), (48.0, 18.0), 11.75)
    else:
        plot = Plot("public", (xmin + 50.0, ymin + 20.0), (36.0, 24.0), 8.45)
    d.plots[plot.name] = plot
    foot = shapely.box(xmin + 4.0, ymin + 10.0, xmin + 30.0, ymin + 22.0)
    if kind == "school":
        d.buildings.append(Feature(foot, _fields(rng, foot, 2, "school", "第五小学 食堂", 2008)))
        _poi(d, block, "primary_school", "通辽市第五小学")
        d.landcover.append(_green_between(d, block))
    else:
        name = "住宅配套楼" if kind == "tower" else "社区服务中心 附楼"
        use = "residential" if kind == "tower" else "public"
        d.buildings.append(Feature(foot, _fields(rng, foot, 4, use, name, 2016)))
        cover = "green" if kind == "tower" else "paved"
        d.landcover.append(Feature(_free(d, block), {"landcover": cover, "name": ""}))
        if kind == "public":
            _poi(d, block, "elderly_care", "科尔沁区养老服务中心")


def _roads(d: District, x0: float, y0: float) -> None:
    """Centrelines on the block edges: the middle axes primary, the ring secondary, the rest
    tertiary (the compounds' lanes are drawn with their blocks)."""
    w, h = COLUMNS * BLOCK_W, ROWS * BLOCK_D
    for i in range(COLUMNS + 1):
        x = x0 + i * BLOCK_W
        kind = "primary" if i == COLUMNS // 2 else "secondary" if i in (0, COLUMNS) else "tertiary"
        d.roads.append(
            Feature(
                shapely.LineString([(x, y0), (x, y0 + h)]),
                {"highway": kind, "name": f"经{i + 1}路"},
            )
        )
    for j in range(ROWS + 1):
        y = y0 + j * BLOCK_D
        kind = "primary" if j == ROWS // 2 else "secondary" if j in (0, ROWS) else "tertiary"
        d.roads.append(
            Feature(
                shapely.LineString([(x0, y), (x0 + w, y)]),
                {"highway": kind, "name": f"纬{j + 1}路"},
            )
        )


def _open_space(d: District, x0: float, y0: float) -> None:
    """The road surfaces (paved), the boundary of the built-up area, farmland around it."""
    w, h = COLUMNS * BLOCK_W, ROWS * BLOCK_D
    area = shapely.box(x0 - 8.0, y0 - 8.0, x0 + w + 8.0, y0 + h + 8.0)
    blocks = shapely.union_all(
        [f.geometry for f in d.landcover]
        + [b.geometry for b in d.buildings]
        + [p.footprint for p in d.plots.values()]
        + [p.geometry for p in d.parks]
    )
    surfaces = area.difference(blocks.buffer(0.5)).intersection(area)
    d.landcover.append(Feature(surfaces, {"landcover": "paved", "name": "道路"}))
    d.boundary.append(Feature(area, {"name": "科尔沁区示范片区"}))
    ring = area.buffer(150.0, join_style="mitre").difference(area)
    d.landcover.append(Feature(ring, {"landcover": "farmland", "name": ""}))
