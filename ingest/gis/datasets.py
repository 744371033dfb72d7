"""Which files and folders are GIS datasets, and how GDAL opens them: by content, not by suffix.

A suffix that names a vector format (``FORMATS``: .gpkg, .shp, .sqlite, a .gdb folder,
.tab/.mif, .dxf, .gml, .kml ...) claims the file, so that a broken one is refused with GDAL's
reason, and a format whose driver this GDAL build lacks is refused naming the driver. Any
other file is GIS when GDAL opens it as a vector dataset with a layer of geometries: a GeoJSON
named .txt, a SpatiaLite named .db, GML named .xml, a ZIP holding a shapefile (read through
``/vsizip/``). Opening reads a header or a catalogue, not the features, which keeps the
registry's question cheap.

CSV has no geometry of its own: GDAL's CSV driver is told which columns hold WKT or X/Y
(``csv_geometry`` in ``schemas/gis_attributes.json``), and a CSV without them is no GIS file.
A CSV-looking text with another suffix (.txt) is opened through GDAL's ``CSV:`` prefix.
"""

from __future__ import annotations

import functools
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pyogrio
import pyogrio.errors
import pyogrio.raw

from cim.errors import InputFileError, UnsupportedFile
from ingest.gis.attributes import load_config
from ingest.sniff import read_head

#: the errors pyogrio raises for a dataset or layer GDAL cannot open or read
OGR_ERRORS = (
    pyogrio.errors.DataSourceError,
    pyogrio.errors.DataLayerError,
    pyogrio.errors.FieldError,
    pyogrio.errors.GeometryError,
    pyogrio.errors.FeatureError,
    pyogrio.errors.CRSError,
)

#: suffixes that name a vector format -> (what it is, the GDAL drivers that read it), from
#: ``formats`` in schemas/gis_attributes.json
FORMATS: Mapping[str, tuple[str, tuple[str, ...]]] = {
    suffix: (str(entry[0]), tuple(entry[1]))
    for suffix, entry in load_config()["formats"].items()
    if not suffix.startswith("$")
}

#: the suffixes of CSV text (GDAL's CSV driver)
CSV_SUFFIXES = (".csv", ".tsv", ".psv")


def format_of(path: Path) -> str | None:
    """The ``FORMATS`` suffix a name ends with (the longest: ".shp.zip" before ".zip")."""
    name = path.name.lower()
    found = [s for s in FORMATS if name.endswith(s)]
    return max(found, key=len) if found else None


@functools.lru_cache(maxsize=1)
def read_drivers() -> frozenset[str]:
    """The vector drivers of this GDAL build that read."""
    return frozenset(pyogrio.list_drivers(read=True))


@functools.lru_cache(maxsize=1)
def csv_options() -> dict[str, str]:
    """GDAL's CSV open options: which columns hold WKT, X and Y (``csv_geometry`` in
    schemas/gis_attributes.json; GDAL compares them case-insensitively)."""
    names = load_config()["csv_geometry"]
    return {
        "GEOM_POSSIBLE_NAMES": ",".join(names["wkt"]),
        "X_POSSIBLE_NAMES": ",".join(names["x"]),
        "Y_POSSIBLE_NAMES": ",".join(names["y"]),
        "KEEP_GEOM_COLUMNS": "NO",
        "AUTODETECT_TYPE": "YES",
    }


@dataclass(frozen=True)
class Dataset:
    """A GIS dataset as GDAL opens it: the path given to GDAL (the file, a folder,
    ``/vsizip/...``, ``CSV:...``) and its open options."""

    source: Path
    gdal_path: str
    open_options: dict[str, str] = field(default_factory=dict)

    def layers(self) -> tuple[list[str], list[str]]:
        """Every layer's name, and the names of those with geometries (raises OGR_ERRORS, or
        InputFileError for text that is not UTF-8)."""
        try:
            listed = pyogrio.list_layers(self.gdal_path)
            names = [str(n) for n, _ in listed]
            if not self.open_options:  # the geometry type needs no option
                return names, [str(n) for n, g in listed if g is not None]
            geometric = []
            for n in names:  # opening a stream reads the header, not the rows (read_info counts)
                with pyogrio.raw.open_arrow(self.gdal_path, layer=n, **self.open_options) as (
                    meta,
                    _,
                ):
                    if meta.get("geometry_type") is not None:
                        geometric.append(n)
        except UnicodeDecodeError as exc:
            raise not_utf8(self.source) from exc
        return names, geometric

    def has_geometries(self) -> bool:
        try:
            return bool(self.layers()[1])
        except InputFileError:
            return True  # text in another encoding: ours to say so
        except (*OGR_ERRORS, ValueError):  # pyogrio: ValueError for an option a driver refuses
            return False


def not_utf8(path: Path) -> InputFileError:
    """The error for a text file GDAL reads as UTF-8 that is not (pyogrio's Arrow reader takes
    no other encoding), with a guess at what it is."""
    try:
        read_head(path).decode("gb18030")
        guess = " (it looks like GB18030/GBK)"
    except UnicodeDecodeError:
        guess = ""
    return InputFileError(
        f"{path}: the text is not UTF-8{guess}; save it as UTF-8 and ingest it again"
    )


def _looks_like_csv(head: bytes) -> bool:
    """Text whose first line has a separator, and that is not JSON or XML."""
    first = head.split(b"\n", 1)[0]
    if b"\x00" in head or head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith((b"{", b"[", b"<")):
        return False
    return any(first.count(sep) for sep in (b",", b";", b"\t", b"|"))


def _zip_datasets(path: Path) -> list[str]:
    """Where the datasets inside a ZIP archive are, for /vsizip/: the folders holding
    shapefiles, and the files and .gdb folders of the other formats."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return []
    found: list[str] = []
    for name in names:
        inner = Path(name)
        fmt = format_of(inner)
        if fmt == ".shp":
            spot = str(inner.parent) if str(inner.parent) != "." else ""
        elif fmt == ".gdb" or ".gdb/" in name.lower():
            spot = name[: name.lower().index(".gdb") + 4]
        elif fmt is not None or name.lower().endswith((*CSV_SUFFIXES, ".json")):
            spot = name
        else:
            continue
        if spot not in found:
            found.append(spot)
    return found


def locate(path: Path, head: bytes = b"") -> Dataset:
    """How GDAL opens ``path``; raises UnsupportedFile when its format needs a driver this
    GDAL build lacks, InputFileError when a ZIP archive holds several datasets."""
    fmt = format_of(path)
    if fmt is not None:
        what, drivers = FORMATS[fmt]
        if not read_drivers() & set(drivers):
            raise UnsupportedFile(
                f"{path}: is {what}, which needs GDAL's {' or '.join(drivers)} driver, and the "
                f"GDAL in this installation ({pyogrio.__gdal_version_string__}) has none; "
                f"convert it to GeoPackage where GDAL has that driver (QGIS, ogr2ogr)"
            )
        return Dataset(path, str(path))
    name = path.name.lower()
    if name.endswith(CSV_SUFFIXES):
        return Dataset(path, str(path), csv_options())
    if name.endswith(".zip") or head.startswith(b"PK\x03\x04"):
        return _zip_dataset(path)
    plain = Dataset(path, str(path))
    if path.is_file() and _looks_like_csv(head) and not plain.has_geometries():
        return Dataset(path, f"CSV:{path}", csv_options())
    return plain


def _zip_dataset(path: Path) -> Dataset:
    root = Dataset(path, f"/vsizip/{path}")
    if root.has_geometries():
        return root
    inside = _zip_datasets(path)
    if len(inside) > 1:
        raise InputFileError(
            f"{path}: the ZIP archive holds several datasets ({', '.join(inside[:6])}); "
            f"unzip it and ingest them one by one"
        )
    if not inside:
        return root  # no dataset: GDAL's refusal says so
    options = csv_options() if inside[0].lower().endswith(CSV_SUFFIXES) else {}
    return Dataset(path, f"/vsizip/{path}/{inside[0]}", options)


def is_dataset(path: Path, head: bytes) -> bool:
    """Whether GDAL opens ``path`` as a vector dataset with geometries (the registry's
    question for a name that does not say so)."""
    try:
        dataset = locate(path, head)
    except InputFileError:
        return True  # a ZIP archive of several datasets: ours to say so
    return dataset.has_geometries()
