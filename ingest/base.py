"""What every ingester shares: the protocol, its options, context and result, and the report.

An ingester is an object (a module's ``INGESTER``) with

* ``kind`` (``"ifc"``, ``"lidar"``, ``"gis"``), ``description`` ("an IFC model", for messages)
  and ``extensions`` (the lower-case suffixes it takes by name, the common ones first: the
  message refusing a file lists them; files of other names are recognised by their content),
* ``options``: the names of the ``IngestOptions`` it takes, ``choices``: the allowed values of
  those that have a fixed list, ``worker_module``: the module the executor's workers run for it
  (preloaded when files of its kind are about to be ingested),
* ``supports(path) -> bool``: cheap, whatever the name: reads the first bytes of the file, or
  asks GDAL to open it (a header or a catalogue, not the features); False for a folder unless
  it is a dataset (a FileGDB ``.gdb``), never raises,
* ``ingest(path, store, ctx) -> IngestResult``: reads the file and writes its rows, tagged with
  ``ctx.source_id``, on ``store.con`` inside the transaction ``run_ingest`` has opened.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypedDict

from cim.errors import UsageError

if TYPE_CHECKING:
    from cim.executor import Executor
    from cim.store import Store

#: what each of the ``IngestOptions`` does, for messages (an ingester names those it takes)
OPTION_USES = {
    "crs": "gives the CRS of point clouds and GIS layers (an IFC model has its georeference, "
    "or --anchor)",
    "layer": "picks a GIS layer",
    "role": "says what a GIS layer is",
    "anchor": "places IFC models",
}


@dataclass(frozen=True)
class Anchor:
    """Where a model's origin (0,0,0) goes: WGS84 lon/lat and elevation (m), and its rotation:
    the model's +x axis points ``rotation_deg`` degrees counter-clockwise from east (true)."""

    lon: float
    lat: float
    elevation: float = 0.0
    rotation_deg: float = 0.0

    @classmethod
    def parse(cls, text: str) -> Anchor:
        parts = [p.strip() for p in text.split(",")]
        try:
            values = [float(p) for p in parts]
        except ValueError:
            values = []
        if not 2 <= len(values) <= 4:
            raise UsageError(
                f"--anchor {text!r}: give LON,LAT[,ELEV[,ROTATION_DEG]] in degrees and metres, "
                f"e.g. --anchor 122.26,43.62,180,0"
            )
        lon, lat = values[0], values[1]
        if not (-180 <= lon <= 180 and -90 <= lat <= 90):
            raise UsageError(f"--anchor {text!r}: longitude/latitude out of range (LON first)")
        return cls(*values)


@dataclass
class IngestOptions:
    crs: str | None = None
    layer: str | None = None
    role: str | None = None
    anchor: Anchor | None = None

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class IngestContext:
    source_id: int
    options: IngestOptions
    executor: Executor
    progress: Callable[[float | None, str | None], None]


@dataclass
class IngestResult:
    """What an ingester returns: filled in from the file it read."""

    format: str | None = None
    crs: str | None = None
    counts: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    status: str = "ingested"  # or needs_placement


class IngestReportJson(TypedDict):
    """One file's report in ``cim ingest --json`` (``schemas/ingest.schema.json``)."""

    path: str
    kind: str
    outcome: str
    source_id: int
    status: str
    format: str | None
    crs: str | None
    counts: dict[str, Any]
    warnings: list[str]
    seconds: float
    message: str
    replaced: list[int]


class IngestFailureJson(TypedDict):
    """A file that failed, in ``cim ingest --json``."""

    path: str
    outcome: str  # "failed"
    error: str


@dataclass
class IngestReport:
    """The outcome of ``run_ingest`` for one file, as shown to the user."""

    path: str
    kind: str
    outcome: str  # ingested | replaced | unchanged
    source_id: int
    status: str
    format: str | None
    crs: str | None
    counts: dict[str, Any]
    warnings: list[str]
    seconds: float
    message: str
    #: the sources this one replaced (the same path, or the one named by ``replaces``)
    replaced: list[int] = field(default_factory=list)

    def as_json(self) -> IngestReportJson:
        return IngestReportJson(
            path=self.path,
            kind=self.kind,
            outcome=self.outcome,
            source_id=self.source_id,
            status=self.status,
            format=self.format,
            crs=self.crs,
            counts=self.counts,
            warnings=self.warnings,
            seconds=self.seconds,
            message=self.message,
            replaced=self.replaced,
        )


class Ingester(Protocol):
    """The shape every ingester keeps (see the module docstring)."""

    #: short name stored in ``sources.kind``: "ifc", "lidar", "gis"
    kind: str
    #: what a file of this kind is, for messages: "an IFC model"
    description: str
    extensions: tuple[str, ...]
    #: the ``IngestOptions`` that apply to this kind (see ``OPTION_USES``)
    options: tuple[str, ...]
    #: options whose values are one of a fixed list (e.g. the GIS roles)
    choices: Mapping[str, tuple[str, ...]]
    #: the module the executor's workers run for this kind (preloaded when files of this kind
    #: are about to be ingested), or None when the kind does its work in the ingesting process
    worker_module: str | None

    def supports(self, path: Path) -> bool: ...

    def ingest(self, path: Path, store: Store, ctx: IngestContext) -> IngestResult: ...
