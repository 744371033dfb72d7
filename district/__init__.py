"""The sample district of `cim demo`: a deterministic generator of a Tongliao neighbourhood.

``generate(DIR)`` writes, from the fixed seed (``plan.SEED``), the same bytes on every run:
a GeoPackage of the district's GIS layers (``gis``), a LAZ survey of its ground and roofs
(``lidar``), three IFC4 buildings on free plots (``bim``: the precast tower with its prefab
declaration, a school, a public building) and ``manifest.json``, which lists every file with
its sha256 and what it is, and the answers known by construction (the tower's assembly rate).

It sits on the core like a client: it may use ``cim``'s core and third-party libraries, and
never the ingesters, the tiler or the viewer (tests/test_architecture.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from district.bim import (
    TOWER_ASSEMBLY_RATE,
    TOWER_DECLARATION,
    TOWER_GRADE,
    civic_building,
    freeze,
    precast_tower,
)
from district.gis import write_gis
from district.lidar import DENSITY, write_laz
from district.plan import CENTRE, CRS, SEED, District, plan

__all__ = ["MANIFEST", "generate", "generated", "read_manifest"]

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
TOWER_NAME = "装配式住宅 1号楼"
TOWER_STOREYS = 9
SCHOOL_NAME = "通辽市第五小学 教学楼"
PUBLIC_NAME = "科尔沁区社区服务中心"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def code_digest() -> str:
    """The generator's own source: another version may write other bytes from the seed."""
    h = hashlib.sha256()
    for f in sorted(Path(__file__).parent.glob("*.py")):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


#: each kind of file's share of the generator's time (measured): the survey takes the most
SHARES = {"gis": 0.1, "lidar": 0.4, "ifc": 0.15, "declaration": 0.0}


class _Files:
    """The files written so far (the manifest's list), telling ``progress`` as each starts."""

    def __init__(self, out: Path, progress: Callable[[float, str | None], None] | None) -> None:
        self.out, self.progress = out, progress
        self.done = 0.0
        self.files: list[dict[str, Any]] = []

    def add(self, name: str, kind: str, what: str, **extra: Any) -> Path:
        if self.progress is not None:
            self.progress(self.done, name)
        self.done += SHARES[kind]
        self.files.append({"path": name, "kind": kind, "what": what, **extra})
        return self.out / name


def generate(
    out: Path, progress: Callable[[float, str | None], None] | None = None
) -> dict[str, Any]:
    """Write the district into the folder ``out`` (made if missing; files of the same names
    replaced); the manifest, also written as ``out/manifest.json``. ``progress`` is told the
    share done (0..1) and the file being written."""
    out.mkdir(parents=True, exist_ok=True)
    district = plan(SEED)
    w = _Files(out, progress)
    what = "GIS layers: buildings, roads, landcover, parks, pois, boundary (EPSG:4550)"
    counts = write_gis(w.add("tongliao-district.gpkg", "gis", what), district)
    w.files[-1]["layers"] = counts
    what = (
        "LiDAR survey of the district's middle: ground (class 2) and roofs (class 6), "
        f"{DENSITY:g} points/m2, LAS 1.4 with a WKT CRS"
    )
    rng = np.random.default_rng([SEED, 1])
    points = write_laz(w.add("tongliao-survey.laz", "lidar", what), district, rng)
    w.files[-1]["points"] = points
    _write_models(w, district)
    if progress is not None:
        progress(w.done, "checksums")
    for f in w.files:
        path = out / f["path"]
        if f["kind"] == "ifc":
            freeze(path)
        f["sha256"], f["bytes"] = _sha256(path), path.stat().st_size
    manifest = {
        "generator": "district",
        "code": code_digest(),
        "seed": SEED,
        "crs": CRS,
        "centre_lonlat": list(CENTRE),
        "files": w.files,
        "buildings": {
            "gis": counts["buildings"],
            "ifc": [f["building"] for f in w.files if f["kind"] == "ifc"],
        },
        "tower": {
            "building": TOWER_NAME,
            "file": "precast-tower.ifc",
            "declaration": "precast-tower.prefab.json",
            "assembly_rate": TOWER_ASSEMBLY_RATE,
            "grade": TOWER_GRADE,
        },
    }
    text = json.dumps(manifest, ensure_ascii=False, indent=2) + "\n"
    (out / MANIFEST).write_text(text, encoding="utf-8")
    if progress is not None:
        progress(1.0, None)
    log.info("district written to %s: %d files", out, len(w.files))
    return manifest


def _write_models(w: _Files, district: District) -> None:
    """The three IFC buildings on their plots and the tower's declaration."""
    tower = district.plots["tower"]
    what = (
        f"precast residential tower, {TOWER_STOREYS} storeys, tagged by IFC and Chinese properties"
    )
    precast_tower(
        w.add("precast-tower.ifc", "ifc", what, building=TOWER_NAME),
        "both",
        storeys=TOWER_STOREYS,
        origin=(tower.origin[0] + 0.2, tower.origin[1] + 0.2),  # its walls' outer faces
        crs=CRS,
        envelope=True,
        name=TOWER_NAME,
    )
    what = "prefab declaration of the tower (the items a model cannot show)"
    declaration = w.add("precast-tower.prefab.json", "declaration", what, building=TOWER_NAME)
    doc = {**TOWER_DECLARATION, "building": TOWER_NAME}
    declaration.write_text(json.dumps(doc, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    for plot, file, name, what, occupancy, room, storeys, height, rooms in (
        ("school", "school.ifc", SCHOOL_NAME, "primary school, 3 storeys, classrooms",
         "school 学校", "教室", 3, 3.9, 6),
        ("public", "public-building.ifc", PUBLIC_NAME, "community service centre, 2 storeys",
         "office 办公", "办公室", 2, 4.2, 4),
    ):  # fmt: skip
        p = district.plots[plot]
        civic_building(
            w.add(file, "ifc", what, building=name),
            name=name,
            occupancy=occupancy,
            room=room,
            size=p.size,
            storeys=storeys,
            origin=p.origin,
            crs=CRS,
            storey_height=height,
            rooms=rooms,
        )


def generated(out: Path) -> dict[str, Any] | None:
    """The manifest of the district already in ``out`` when this generator wrote it from
    the same seed and every file is there with its sha256 (nothing to write again); else
    None."""
    try:
        doc = read_manifest(out)
    except (OSError, ValueError):
        return None
    if doc.get("code") != code_digest() or doc.get("seed") != SEED:
        return None
    for f in doc.get("files", []):
        path = out / f["path"]
        if not path.is_file() or path.stat().st_size != f["bytes"] or _sha256(path) != f["sha256"]:
            return None
    return doc


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of a generated district in ``folder``."""
    doc: dict[str, Any] = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    return doc
