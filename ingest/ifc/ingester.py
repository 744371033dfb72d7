"""IFC ingest: designers' building models into the store, placed on the map.

Reads IFC2X3, IFC4 and IFC4X3 files with ifcopenshell. Geometry comes from ifcopenshell's
geometry iterator (world coordinates, openings subtracted, triangulated with normals, colours
from the IFC styles), run by the executor's workers on chunks of the products (ingest.ifc.mesh),
one process per core, each parsing the file once, while this process reads the properties
(``Mesher``). Not the iterator's own threads: on 2 cores they meshed no faster than one thread
while keeping both cores busy; two processes take about half the time. With one worker
(``--workers 1``) the iterator runs in this process.

One ingest (``IfcIngest``) meshes the products and reads their properties, places the model
(ingest.ifc.placement), and writes, all tagged with the source id:

* ``elements``: one row per IfcProduct with a representation (meshed or failed with the reason),
  its attributes, property and quantity sets (inherited from the type object), and quantities
  taken from Qto sets when present, else computed from the mesh; ``meshes``: one per meshed
  element, in model coordinates (metres); ``element_relations``: aggregation (assembly -> part),
  voids, fills and hosts (wall -> window) (ingest.ifc.elements);
* ``storeys``, ``buildings`` (footprint, ground, height, storeys, GFA) (ingest.ifc.buildings)
  and the ``placements`` row.
"""

from __future__ import annotations

import json
import multiprocessing
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import ifcopenshell
import numpy as np
import psutil
import shapely

from cim.errors import InputFileError, UnsupportedFile
from cim.georef import Placement
from cim.model.heights import heights_from_points
from cim.model.linking import link_buildings
from ingest.base import IngestContext, IngestResult
from ingest.ifc.buildings import building_of, read_storeys, storey_of, write_buildings
from ingest.ifc.elements import ElementRow, ElementWriter
from ingest.ifc.guard import KernelCrashed, guarded
from ingest.ifc.header import HEADER_BYTES, check_header
from ingest.ifc.mesh import (
    ITERATOR_REFUSED,
    IteratorRefused,
    MeshStats,
    is_shell,
    is_terrain,
    iterate_meshes,
    mesh_alone,
    mesh_chunk,
)
from ingest.ifc.placement import model_placement, model_schema, stored_params
from ingest.ifc.properties import PropertyReader
from ingest.ifc.quirks import OddItems, related_one, repair, unit_scale

if TYPE_CHECKING:
    from cim.store import Store

TESTED_SCHEMAS = ("IFC2X3", "IFC4", "IFC4X3_ADD2")

#: a parsed model's memory per byte of its file (measured on the samples and a generated
#: tower of 12,040 products) and a worker's own (libraries, the kernel's working memory):
#: Mesher.workers_fit
PARSED_PER_FILE_BYTE = 12
WORKER_BASE_BYTES = 256 * 2**20

#: chunks of products per worker (Mesher). More balance the workers' loads (a model may spend
#: most of its meshing on a few elements: in few chunks they land in one and are meshed one
#: after the other), and each costs an iterator set-up, which grows with the file
CHUNKS_PER_WORKER = 3


class IfcIngester:
    """The ingester of IFC models (see ingest.Ingester)."""

    kind = "ifc"
    description = "an IFC model"
    options = ("anchor",)
    choices: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    worker_module = "ingest.ifc.mesh"
    extensions = (".ifc",)

    def supports(self, path: Path) -> bool:
        """An .ifc file (with other content still ours to refuse with a clear message), or a
        STEP file of any name whose header names an IFC schema (an IFC saved as .step, .txt)."""
        from ingest.sniff import is_ifc_header, read_head

        if not path.is_file():
            return False
        return path.suffix.lower() in self.extensions or is_ifc_header(read_head(path))

    def ingest(self, path: Path, store: Store, ctx: IngestContext) -> IngestResult:
        model = open_model(path)
        ctx.progress(0.02, "read model")
        return IfcIngest(path, model, store, ctx).run()


INGESTER = IfcIngester()


def open_model(path: Path) -> ifcopenshell.file:
    """Open an IFC file or raise InputFileError / UnsupportedFile naming it and the reason."""
    with path.open("rb") as f:
        head = f.read(HEADER_BYTES)
        f.seek(max(0, path.stat().st_size - 4096))
        tail = f.read()
    if not head.lstrip().startswith(b"ISO-10303-21"):
        raise InputFileError(
            f"{path}: not an IFC file (no ISO-10303-21 header); export it again as IFC (STEP)"
        )
    if b"END-ISO-10303-21" not in tail:
        raise InputFileError(
            f"{path}: the file is truncated (no END-ISO-10303-21 trailer); copy or export it again"
        )
    check_header(path, head)  # what would crash ifcopenshell's parser
    try:
        model = ifcopenshell.open(str(path))
    except ifcopenshell.SchemaError as exc:
        raise UnsupportedFile(
            f"{path}: unsupported IFC schema ({exc}); export as IFC2X3, IFC4 or IFC4X3_ADD2"
        ) from exc
    except (ifcopenshell.Error, OSError, RuntimeError) as exc:
        raise InputFileError(f"{path}: cannot read the IFC file ({exc})") from exc
    if not model.by_type("IfcProject"):
        raise InputFileError(f"{path}: no IfcProject in the file; it is not a complete IFC model")
    return model


@dataclass
class Mesher:
    """Meshes a model's products and reads their properties (``reader``) meanwhile: on the
    executor's workers, or in this process (see ``mesh``). Adds to ``warnings`` why a model
    that could have gone to the workers did not, and to ``odd`` what the kernel cannot mesh."""

    path: Path
    model: ifcopenshell.file
    ctx: IngestContext
    reader: PropertyReader
    warnings: list[str]
    odd: OddItems

    def mesh(self, products: dict[int, Any]) -> dict[int, ElementRow]:
        """Mesh every product, compute each mesh's quantities and outline, read properties.

        With an executor of several workers (the CLI's local pool, or a Dask cluster), chunks
        of products are meshed by the workers, each opening the file itself (on a cluster it
        must be reachable at the same path), while this process reads the properties (see
        _mesh_pooled). With one worker, the kernel meshes in this process on its own
        threads while this thread takes each result as it comes (see _mesh_here)."""
        rows = {pid: ElementRow(p) for pid, p in products.items()}
        executor = self.ctx.executor
        if getattr(executor, "distributed", False) or (
            executor.workers >= 2 and self.workers_fit(executor.workers)
        ):
            self._mesh_pooled(rows)
        else:
            self._mesh_here(rows)
        self._mesh_the_rest(rows)
        return rows

    def _mesh_the_rest(self, rows: dict[int, ElementRow]) -> None:
        """What the iterator passed over, meshed one by one (see mesh_alone), else kept with
        the kernel's reason: an element ``failed``, a space without geometry (its Qto
        quantities stay).

        In a forked child (ingest.ifc.guard), which says which element it starts before
        meshing it: when the kernel crashes on one, that element is kept without geometry
        (``kernel_crash``) and a new child goes on with the next."""
        model = self.model
        pending = [pid for pid, row in rows.items() if row.mesh is None]
        crashed: set[int] = set()
        todo = pending
        while todo:

            def work(send: Callable[[Any], None], ids: tuple[int, ...] = tuple(todo)) -> None:
                stats_of = MeshStats()
                for pid in ids:
                    send(("start", pid))
                    product = model.by_id(pid)
                    mesh, error = mesh_alone(product)
                    stats: dict[str, float] = {}
                    outline = None
                    if mesh is not None:
                        stats, outline = stats_of(mesh, is_terrain(product))
                    send(("result", pid, mesh, error, stats, outline))

            started: int | None = None
            try:
                for message in guarded(work):
                    if message[0] == "start":
                        started = message[1]
                        continue
                    _, pid, mesh, error, stats, outline = message
                    row = rows[pid]
                    row.mesh, row.error, row.stats = mesh, error, stats
                    if is_shell(row.product):
                        row.outline = outline
                    started = None
                todo = []
            except KernelCrashed as exc:
                # the element it started and did not finish is the one it crashed on; if it
                # crashed between two (never seen), every element left is taken as the cause
                culprits = [started] if started is not None else list(todo)
                for pid in culprits:
                    rows[pid].error = (
                        f"the geometry kernel crashed meshing it ({exc.signal_name}); "
                        f"kept without geometry"
                    )
                    crashed.add(pid)
                todo = todo[todo.index(started) + 1 :] if started is not None else []
        for pid in pending:
            row = rows[pid]
            product = row.product
            if row.mesh is not None:
                self.odd.add("meshed_alone", product, product.is_a())
            elif pid in crashed:
                self.odd.add("kernel_crash", product, f"{product.is_a()}: {row.error}")
            elif product.is_a("IfcSpace"):
                self.odd.add("space_not_meshed", product, row.error)
            else:
                self.odd.add("not_meshed", product, f"{product.is_a()}: {row.error}")

    def _mesh_here(self, rows: dict[int, ElementRow]) -> None:
        """The geometry iterator on the kernel's own threads, in a child forked from this
        process (ingest.ifc.guard: a native crash of the kernel kills the child, not the
        ingest), which also computes each mesh's quantities and outline, while this process
        reads the properties of each element as its mesh comes. After a crash, the elements
        not meshed yet are meshed one by one (_mesh_the_rest), which finds the culprit."""
        total = max(1, len(rows))
        threads = multiprocessing.cpu_count()
        self.reader.definitions()  # one pass over the relations, before the child forks
        model = self.model

        def work(send: Callable[[Any], None]) -> None:
            try:
                for result in iterate_meshes(model, threads):
                    if result[0] in rows:
                        send(result)
            except IteratorRefused as exc:
                send((None, str(exc), None, None))

        done = 0
        try:
            for pid, mesh, stats, outline in guarded(work):
                if pid is None:
                    # the iterator's constructor reads the model's contexts and refuses the
                    # whole model for one odd item in them (a required attribute null): every
                    # product is meshed one by one instead (_mesh_the_rest), each degrading
                    # alone
                    self.warnings.append(f"{self.path.name}: {ITERATOR_REFUSED} ({mesh})")
                    continue
                row = rows[pid]
                row.mesh, row.stats, row.outline = mesh, stats, outline
                row.props = self.reader.properties(row.product)
                done += 1
                if done % 25 == 0:
                    self.ctx.progress(0.05 + 0.7 * done / total, f"geometry {done}/{total}")
        except KernelCrashed as exc:
            self.warnings.append(
                f"{self.path.name}: the geometry kernel crashed ({exc.signal_name}) meshing the "
                f"model after {done} of {len(rows)} elements; the rest were meshed one by one, "
                f"and those it crashes on are kept without geometry"
            )
        for entry in rows.values():
            if entry.mesh is None:
                entry.props = self.reader.properties(entry.product)

    def workers_fit(self, workers: int) -> bool:
        """Whether ``workers`` local workers, each parsing the model, fit in half the free
        memory; else the model is meshed in this process, and the report says why."""
        need = workers * (PARSED_PER_FILE_BYTE * self.path.stat().st_size + WORKER_BASE_BYTES)
        free = psutil.virtual_memory().available
        if need <= free / 2:
            return True
        self.warnings.append(
            f"{self.path.name}: meshed in one process: {workers} workers would each parse the "
            f"model (about {need / 2**30:.1f} GB in all) and {free / 2**30:.1f} GB are free"
        )
        return False

    def _mesh_pooled(self, rows: dict[int, ElementRow]) -> None:
        """Chunks of products meshed by the executor's workers (mesh_chunk), this process
        reading the properties meanwhile.

        Why processes: the kernel's own threads do not mesh faster than one thread (on the
        samples and a generated tower, at up to twice the CPU time), while two processes with
        half the products each take about half the time, each parsing the file itself."""
        executor = self.ctx.executor
        ids = sorted(rows)
        n_chunks = max(1, min(len(ids), CHUNKS_PER_WORKER * executor.workers))
        # round robin: neighbours in the file (a storey's walls) go to different workers
        chunks = [ids[i::n_chunks] for i in range(n_chunks)]
        items = [(str(self.path), chunk) for chunk in chunks if chunk]

        def items_then_properties() -> Iterator[tuple[str, list[int]]]:
            yield from items
            # every chunk is with the workers now (the window below holds them all): the
            # properties are read while they mesh
            self.reader.definitions()
            for entry in rows.values():
                entry.props = self.reader.properties(entry.product)

        done = 0
        try:
            for results in executor.map(mesh_chunk, items_then_properties(), window=len(items) + 1):
                for pid, mesh, stats, outline_wkb in results:
                    row = rows[pid]
                    row.mesh = mesh
                    row.stats = stats
                    if outline_wkb is not None:  # a shell element's (mesh_chunk)
                        row.outline = shapely.from_wkb(outline_wkb)
                    done += 1
                self.ctx.progress(
                    0.05 + 0.7 * done / max(1, len(rows)), f"geometry {done}/{len(rows)}"
                )
        except BrokenProcessPool:
            # a worker died (a native crash of the kernel on one element, or memory): what
            # it and the others had not sent yet is meshed one by one in a guarded child
            # (_mesh_the_rest), which finds the element the kernel crashes on and keeps it
            # without geometry; the next use of the executor starts a fresh pool
            self.warnings.append(
                f"{self.path.name}: a worker process died while meshing the model (a crash in "
                f"the geometry kernel, or memory) after {done} of {len(rows)} elements; the "
                f"rest were meshed one by one, and those the kernel crashes on are kept "
                f"without geometry"
            )
            for entry in rows.values():
                if entry.mesh is None and not entry.props:
                    entry.props = self.reader.properties(entry.product)


class IfcIngest:
    """One ingest of one model: meshes and properties (Mesher), the placement, the writes
    (ingest.ifc.buildings, ElementWriter), the LiDAR heights and links of its buildings."""

    def __init__(self, path: Path, model: ifcopenshell.file, store: Store, ctx: IngestContext):
        self.path = path
        self.model = model
        self.store = store
        self.ctx = ctx
        self.warnings: list[str] = []
        self.odd = OddItems()
        for kind, entity in repair(model, path):  # what the kernel cannot read, readable
            self.odd.add(kind, entity)
        self.unit_scale = unit_scale(model, "LENGTHUNIT", self.odd)
        self.reader = PropertyReader(model, self.odd)

    def run(self) -> IngestResult:
        model = self.model
        products = {
            p.id(): p for p in model.by_type("IfcProduct") if getattr(p, "Representation", None)
        }
        if not products:
            raise InputFileError(
                f"{self.path}: no element with geometry (no IfcProduct with a representation): "
                f"nothing to put on the map; export the model with its 3D geometry"
            )
        mesher = Mesher(self.path, model, self.ctx, self.reader, self.warnings, self.odd)
        rows = mesher.mesh(products)
        # elements that only aggregate parts (IfcElementAssembly ...) keep their properties too
        for rel in model.by_type("IfcRelAggregates"):
            whole = related_one(rel, "RelatingObject", self.odd)
            if whole is not None and whole.is_a("IfcElement") and whole.id() not in rows:
                rows[whole.id()] = ElementRow(whole, props=self.reader.properties(whole))
        meshed = [r for r in rows.values() if r.mesh is not None]
        for r in rows.values():  # where each element stands, once (both writers need it)
            r.storey = storey_of(r.product, self.odd)
            r.building = building_of(r.storey if r.storey is not None else r.product, self.odd)
        placement = self.placement(meshed)
        self.ctx.progress(0.85, "writing")
        source_id = self.ctx.source_id
        storeys = read_storeys(model, self.unit_scale, self.odd)
        buildings = write_buildings(self.store, model, source_id, rows, storeys, placement)
        writer = ElementWriter(
            self.store,
            model,
            source_id,
            self.path,
            self.reader,
            self.unit_scale,
            self.warnings,
            self.odd,
        )
        element_ids = writer.write_elements(rows, placement, buildings)
        writer.write_meshes(rows, element_ids)
        n_rel = writer.write_relations()
        self.store.con.execute(
            "INSERT INTO placements (source_id, method, matrix, params) VALUES (?, ?, ?, ?)",
            [
                source_id,
                placement.method,
                placement.matrix.ravel().tolist(),
                json.dumps(stored_params(placement)),
            ],
        )
        new_buildings = [b for b in buildings.values() if b is not None]
        heights_from_points(self.store, new_buildings)  # LiDAR roofs; the model's height stays
        # link to footprints of the same building from other sources (GIS, LiDAR)
        linked = link_buildings(self.store, new_buildings)
        failed = [
            r
            for pid, r in rows.items()
            if r.mesh is None and pid in products and not r.product.is_a("IfcSpace")
        ]
        counts: dict[str, Any] = {
            "products": len(products),
            "meshed": len(meshed),
            "failed": len(failed),
            "buildings": len(new_buildings),
            "storeys": len(storeys),
            "relations": n_rel,
            "linked": linked,
            "assemblies": len(rows) - len(products),
        }
        odd = self.odd.counts()
        if odd:
            counts["odd_items"] = sum(odd.values())
            counts["odd_items_by_kind"] = odd
            self.warnings.extend(self.odd.warnings(self.path.name))
        if failed:
            by_class: dict[str, int] = defaultdict(int)
            for r in failed:
                by_class[r.product.is_a()] += 1
            counts["failed_by_class"] = dict(by_class)
        schema = model_schema(model)
        if schema not in TESTED_SCHEMAS:
            self.warnings.append(f"schema {schema} is read but not among the tested ones")
        self.ctx.progress(1.0, f"{len(meshed)} meshed, {len(failed)} failed")
        return IngestResult(
            format=schema,
            crs=self.store.crs_label if placement.method != "none" else None,
            counts=counts,
            warnings=self.warnings,
            status="needs_placement" if placement.needs_placement else "ingested",
        )

    def placement(self, meshed: list[ElementRow]) -> Placement:
        """The model's placement, fitted over the extent of its meshes (meshes without a
        vertex left out); its warnings are the ingest's."""
        verts = [r.mesh.verts for r in meshed if r.mesh is not None and len(r.mesh.verts)]
        if verts:
            allv = np.vstack(verts)
            lo, hi = allv.min(axis=0), allv.max(axis=0)
            center = (lo + hi) / 2
            half = float(max(hi[0] - lo[0], hi[1] - lo[1]) / 2)
        else:
            center, half = np.zeros(3), 50.0
        anchor = self.ctx.options.anchor
        placement = model_placement(self.model, self.store, anchor, self.unit_scale, center, half)
        self.warnings.extend(placement.warnings)
        return placement
