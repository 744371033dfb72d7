"""The elements of an IFC model: the ``elements``, ``meshes`` and ``element_relations`` rows.

One ``elements`` row per IfcProduct with a representation (meshed, or failed with the reason)
and per assembly of such parts: its attributes, property and quantity sets, common flags, and
quantities taken from its Qto sets when present and plausible, else computed from its mesh;
its bounding box in the project CRS. Meshes stay in model coordinates (metres), each about its
lowest corner. Relations: aggregation (assembly -> part), voids, fills and hosts (a wall
hosting a window through an opening).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ifcopenshell
import numpy as np
import pyarrow as pa
from shapely.geometry.base import BaseGeometry

from cim.georef import Placement
from ingest.ifc.mesh import MeshData
from ingest.ifc.properties import PropertyReader, attr, material_layers, size_attributes
from ingest.ifc.quirks import (
    OddItems,
    label,
    number,
    related_many,
    related_one,
    text,
    unit_scale,
)

if TYPE_CHECKING:
    from cim.store import Store

#: quantity names looked up in Qto sets, in order of preference (IFC4 Qto_* and Revit's
#: IFC2X3 "BaseQuantities")
_QTO_NAMES = {
    "volume": ("NetVolume", "GrossVolume", "Volume"),
    "surface_area": ("NetSurfaceArea", "GrossSurfaceArea", "OuterSurfaceArea", "TotalSurfaceArea"),
    "projected_area": (
        "NetFootprintArea",
        "GrossFootprintArea",
        "ProjectedArea",
        "NetProjectedArea",
        "GrossProjectedArea",
    ),
    "height": ("Height", "NetHeight", "GrossHeight", "OverallHeight"),
}

#: a Qto quantity more than this factor away from its mesh's is taken for a unit error
QTO_MESH_FACTOR = 10.0


@dataclass
class ElementRow:
    """What the ingest gathers of one element before it writes it."""

    product: Any
    mesh: MeshData | None = None
    error: str | None = None
    stats: dict[str, float] = field(default_factory=dict)
    outline: BaseGeometry | None = None  # projected outline in model metres (shell elements)
    props: dict[str, Any] = field(default_factory=dict)
    storey: Any = None  # the IfcBuildingStorey it stands in (through its assembly if a part)
    building: Any = None  # the IfcBuilding above that storey (or above the element itself)


@dataclass
class ElementWriter:
    """Writes one model's element rows, meshes and relations for the source ``source_id``;
    adds what the user should know to ``warnings``."""

    store: Store
    model: ifcopenshell.file
    source_id: int
    path: Path
    reader: PropertyReader
    unit_scale: float  # metres per model length unit
    warnings: list[str]
    odd: OddItems = field(default_factory=OddItems)
    qscale: dict[str, float] = field(init=False)

    def __post_init__(self) -> None:
        self.qscale = quantity_scales(self.model, self.unit_scale, self.odd)

    def write_elements(
        self,
        rows: dict[int, ElementRow],
        placement: Placement,
        buildings: dict[int | None, int | None],
    ) -> dict[int, int]:
        """The ``elements`` rows; returns entity id -> elements.id. ``buildings``: IfcBuilding
        entity id -> buildings.id (see write_buildings)."""
        source_id = self.source_id
        con = self.store.con
        n = len(rows)
        if n == 0:
            return {}
        ids = [
            r[0]
            for r in con.execute("SELECT nextval('elements_id_seq') FROM range(?)", [n]).fetchall()
        ]
        cols: dict[str, list[Any]] = defaultdict(list)
        element_ids: dict[int, int] = {}
        implausible: dict[str, int] = defaultdict(int)
        for eid, (pid, r) in zip(ids, rows.items(), strict=True):
            p = r.product
            element_ids[pid] = eid
            props = r.props or self.reader.properties(p)
            st, b = r.storey, r.building
            flags = props["flags"]
            quantities, qsource = _quantities(r, props["qsets"], self.qscale, implausible)
            if r.mesh is not None:
                pv = placement.apply(r.mesh.verts)
                bbox = [*pv.min(axis=0), *pv.max(axis=0)]
            else:
                bbox = [None] * 6
            cols["id"].append(eid)
            cols["source_id"].append(source_id)
            cols["building_id"].append(buildings.get(b.id() if b else None))
            cols["global_id"].append(label(p))
            cols["ifc_class"].append(p.is_a())
            cols["predefined_type"].append(props["predefined_type"])
            cols["name"].append(text(p.Name))
            cols["object_type"].append(text(attr(p, "ObjectType")))
            cols["type_name"].append(props["type_name"])
            cols["type_class"].append(props["type_class"])
            cols["storey"].append(text(st.Name) if st is not None else None)
            elev = number(st.Elevation) if st is not None else None
            cols["storey_elevation"].append(
                float(elev) * self.unit_scale if elev is not None else None
            )
            cols["materials"].append(json.dumps(props["materials"], ensure_ascii=False))
            cols["is_external"].append(_bool(flags.get("IsExternal")))
            cols["load_bearing"].append(_bool(flags.get("LoadBearing")))
            cols["thermal_transmittance"].append(_float(flags.get("ThermalTransmittance")))
            fr = flags.get("FireRating")
            cols["fire_rating"].append(str(fr) if fr is not None else None)
            cols["flags"].append(json.dumps(flags, ensure_ascii=False, default=str))
            cols["psets"].append(json.dumps(props["psets"], ensure_ascii=False, default=str))
            cols["qsets"].append(json.dumps(props["qsets"], ensure_ascii=False, default=str))
            for q in _QTO_NAMES:
                cols[q].append(quantities[q])
            cols["quantity_source"].append(json.dumps(qsource))
            size = size_attributes(p, self.unit_scale)
            cols["attributes"].append(None if size is None else json.dumps(size))
            layers = material_layers(self.model, p, self.unit_scale)
            cols["layers"].append(
                None if layers is None else json.dumps(layers, ensure_ascii=False)
            )
            cols["geometry_status"].append(_geometry_status(r))
            cols["geometry_error"].append(r.error)
            for name, value in zip(
                ("xmin", "ymin", "zmin", "xmax", "ymax", "zmax"), bbox, strict=True
            ):
                cols[name].append(float(value) if value is not None else None)
        if implausible:
            listed = ", ".join(f"{n} x {q}" for q, n in sorted(implausible.items()))
            self.warnings.append(
                f"{self.path.name}: quantities in the model's Qto sets more than "
                f"{QTO_MESH_FACTOR:g}x away from the element's shape (a unit error in the "
                f"export): the shape's values are used ({listed})"
            )
        self.store.insert_arrow("elements", pa.table(cols))
        return element_ids

    def write_meshes(self, rows: dict[int, ElementRow], element_ids: dict[int, int]) -> None:
        """The ``meshes`` rows of the meshed elements (``element_ids``: from write_elements)."""
        source_id = self.source_id
        cols: dict[str, list[Any]] = defaultdict(list)
        for pid, r in rows.items():
            m = r.mesh
            if m is None or len(m.faces) == 0:
                continue
            origin = m.verts.min(axis=0)
            cols["source_id"].append(source_id)
            cols["owner"].append("element")
            cols["owner_id"].append(element_ids[pid])
            cols["origin_x"].append(float(origin[0]))
            cols["origin_y"].append(float(origin[1]))
            cols["origin_z"].append(float(origin[2]))
            cols["n_vertices"].append(len(m.verts))
            cols["n_triangles"].append(len(m.faces))
            cols["positions"].append((m.verts - origin).astype(np.float32).tobytes())
            cols["normals"].append(m.normals.astype(np.float32).tobytes())
            cols["indices"].append(m.faces.astype(np.uint32).tobytes())
            cols["material_ids"].append(m.material_ids.astype(np.uint16).tobytes())
            cols["materials"].append(json.dumps(m.materials, ensure_ascii=False))
        if not cols:
            return
        schema = {
            k: (pa.binary() if k in ("positions", "normals", "indices", "material_ids") else None)
            for k in cols
        }
        arrays = {k: pa.array(v, type=schema[k]) for k, v in cols.items()}
        self.store.insert_arrow("meshes", pa.table(arrays))

    def write_relations(self) -> int:
        """The ``element_relations`` rows; returns how many."""
        source_id = self.source_id
        rels: list[tuple[int, str, str, str]] = []
        fills: dict[str, str] = {}
        odd = self.odd
        for rel in self.model.by_type("IfcRelFillsElement"):
            o = related_one(rel, "RelatingOpeningElement", odd)
            e = related_one(rel, "RelatedBuildingElement", odd)
            if o is not None and e is not None:
                rels.append((source_id, "fills", label(o), label(e)))
                fills[label(o)] = label(e)
        for rel in self.model.by_type("IfcRelVoidsElement"):
            h = related_one(rel, "RelatingBuildingElement", odd)
            o = related_one(rel, "RelatedOpeningElement", odd)
            if h is not None and o is not None:
                rels.append((source_id, "voids", label(h), label(o)))
                if label(o) in fills:
                    rels.append((source_id, "hosts", label(h), fills[label(o)]))
        for rel in self.model.by_type("IfcRelAggregates"):
            whole = related_one(rel, "RelatingObject", odd)
            if whole is None or not whole.is_a("IfcElement"):
                continue  # the spatial tree is kept in elements.storey / building_id
            for part in related_many(rel, "RelatedObjects", odd):
                rels.append((source_id, "aggregates", label(whole), label(part)))
        self.store.insert_rows(
            "element_relations",
            ("source_id", "kind", "relating_guid", "related_guid"),
            rels,
        )
        return len(rels)


def quantity_scales(
    model: ifcopenshell.file, length_scale: float, odd: OddItems
) -> dict[str, float]:
    """Metres per model unit for each quantity of _QTO_NAMES (Qto sets are in model units)."""
    area = unit_scale(model, "AREAUNIT", odd)
    return {
        "volume": unit_scale(model, "VOLUMEUNIT", odd),
        "surface_area": area,
        "projected_area": area,
        "height": length_scale,
    }


def _geometry_status(r: ElementRow) -> str:
    """ok (meshed); failed (a representation the kernel cannot mesh); none (no
    representation, or a space the kernel cannot mesh: its Qto quantities describe it)."""
    if r.mesh is not None:
        return "ok"
    if getattr(r.product, "Representation", None) and not r.product.is_a("IfcSpace"):
        return "failed"
    return "none"


def _quantities(
    r: ElementRow, qsets: dict[str, Any], qscale: dict[str, float], implausible: dict[str, int]
) -> tuple[dict[str, float | None], dict[str, str]]:
    """An element's quantities and where each comes from: its Qto sets, else its mesh. A Qto
    value implausible beside the mesh's is counted in ``implausible`` (by its name)."""
    quantities: dict[str, float | None] = {}
    qsource: dict[str, str] = {}
    solid_cut = r.product.is_a("IfcFeatureElementSubtraction")
    for q, names in _QTO_NAMES.items():
        value, qname = _from_qsets(qsets, names, qscale[q])
        mesh_value = r.stats.get(q)
        if (
            value is not None
            and mesh_value
            and not solid_cut  # an opening's body reaches past its wall on purpose
            and not _plausible(value, mesh_value)
        ):
            # a Qto in the wrong unit (Revit writes some volumes as m2 x mm): the
            # mesh's value is kept and the Qto's is named beside it
            qsource[q] = f"mesh (qto:{qname} = {value:.6g} implausible)"
            quantities[q] = mesh_value
            implausible[str(qname)] += 1
        elif value is not None:
            quantities[q] = value
            qsource[q] = f"qto:{qname}"
        elif q in r.stats:
            quantities[q] = r.stats[q]
            qsource[q] = "mesh"
        else:
            quantities[q] = None
            if q == "volume" and r.stats:
                qsource[q] = "none (the mesh is not closed)"
    return quantities, qsource


def _plausible(qto: float, mesh: float) -> bool:
    """Whether a Qto quantity can be the mesh's: gross and net values differ from the net
    shape by openings and layers, far less than the 1000x of a unit mix-up."""
    return mesh / QTO_MESH_FACTOR <= qto <= mesh * QTO_MESH_FACTOR


def _from_qsets(
    qsets: dict[str, Any], names: tuple[str, ...], scale: float
) -> tuple[float | None, str | None]:
    for n in names:
        for qname in sorted(qsets):
            v = qsets[qname].get(n)
            if isinstance(v, int | float) and not isinstance(v, bool) and v > 0:
                # quantities are in the project's units (LENGTHUNIT, AREAUNIT, VOLUMEUNIT)
                return float(v) * scale, f"{qname}.{n}"
    return None, None


def _bool(v: Any) -> bool | None:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.upper() in ("TRUE", ".T.", "YES"):
        return True
    if isinstance(v, str) and v.upper() in ("FALSE", ".F.", "NO"):
        return False
    return None


def _float(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None
