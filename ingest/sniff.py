"""What a file is, from its first bytes: the headers the ingesters recognise, and a guess at
everything else for the one line that refuses a file no ingester takes.

The ingesters recognise their kinds by content as well as by name (a LAZ named ``.bin``, an
IFC named ``.step``), so the registry's refusal says what the file looks like rather than only
which suffixes exist. The signatures are written here by hand: the generic file-type libraries
know PDFs and images but none of STEP/IFC, LAS, E57 or DWG, and the guess is only for a
message, never a decision about reading the file.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

#: the first bytes of every LAS/LAZ file (the LAS specification's file signature)
LASF = b"LASF"
#: how much of a file the guesses read: a STEP header section fits in it, and so does a CSV's
#: first line
HEAD_BYTES = 16384

_STEP = re.compile(rb"^\s*ISO-10303-21\s*;")
_FILE_SCHEMA = re.compile(rb"FILE_SCHEMA\s*\(\s*\(\s*'([^']*)'", re.IGNORECASE)

#: first bytes -> what the file is (and what to do where that is clear)
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"%PDF", "a PDF document"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"II*\x00", "a TIFF image (a raster: cim reads vector layers)"),
    (b"MM\x00*", "a TIFF image (a raster: cim reads vector layers)"),
    (b"II+\x00", "a BigTIFF image (a raster: cim reads vector layers)"),
    (b"\x1f\x8b", "a gzip-compressed file: decompress it first"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive: extract it first"),
    (b"Rar!\x1a\x07", "a RAR archive: extract it first"),
    (b"BZh", "a bzip2-compressed file: decompress it first"),
    (b"\xfd7zXZ\x00", "an xz-compressed file: decompress it first"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an MS Office (OLE) document such as .doc or .xls"),
    (b"AC10", "an AutoCAD DWG drawing: save it as DXF"),
    (b"ASTM-E57", "an E57 point cloud: convert it to LAS/LAZ"),
    (b"ply\n", "a PLY mesh or point cloud"),
    (b"ply\r\n", "a PLY mesh or point cloud"),
    (b"glTF", "a binary glTF model (.glb)"),
    (b"PAR1", "a Parquet file without GeoParquet metadata"),
    (b"ARROW1", "an Arrow IPC (Feather) file"),
    (b"\x00\x00\x27\x0a", "the geometry file of a shapefile"),
    (b"SQLite format 3\x00", "a SQLite database with no table GDAL reads as a spatial layer"),
)


#: the side files of multi-file formats -> the file to give instead
_PARTS = {
    **dict.fromkeys((".dbf", ".shx", ".prj", ".cpg", ".sbn", ".sbx", ".qix"), "shapefile|.shp"),
    **dict.fromkeys((".dat", ".id", ".map", ".ind"), "MapInfo table|.tab"),
    ".mid": "MapInfo interchange file|.mif",
}


def read_head(path: Path, n: int = HEAD_BYTES) -> bytes:
    """The first ``n`` bytes of a file (empty for a folder or an unreadable file)."""
    try:
        with path.open("rb") as f:
            return f.read(n)
    except OSError:
        return b""


def step_schema(head: bytes) -> str | None:
    """The FILE_SCHEMA of a STEP (ISO 10303-21) file's header, "" when it names none, or None
    when the bytes are not a STEP file."""
    if not _STEP.match(head):
        return None
    found = _FILE_SCHEMA.search(head)
    return found.group(1).decode("ascii", "replace") if found else ""


def is_ifc_header(head: bytes) -> bool:
    """A STEP file whose header names an IFC schema (IFC2X3, IFC4, IFC4X3_ADD2 ...)."""
    schema = step_schema(head)
    return schema is not None and schema.upper().startswith("IFC")


def _zip_members(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist() if not n.endswith("/")]
    except (zipfile.BadZipFile, OSError, ValueError):
        return "a damaged ZIP archive"
    if any(n.startswith("word/") for n in names):
        return "a Word document"
    if not names:
        return "an empty ZIP archive"
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return f"a ZIP archive without a shapefile or other GIS dataset (it holds {shown})"


def _text(head: bytes) -> str | None:
    """The head as text when it is text (UTF-8, or GB18030 as Chinese agencies write)."""
    if b"\x00" in head:
        return None
    for encoding in ("utf-8", "gb18030"):
        try:
            return head.decode(encoding)
        except UnicodeDecodeError as exc:
            if exc.start > len(head) - 4:  # a character cut at the end of the head
                return head[: exc.start].decode(encoding, "replace")
    return None


def _describe_text(text: str) -> str:
    body = text.lstrip("\ufeff \t\r\n")
    if not body:
        return "blank text"
    lower = body[:200].lower()
    if lower.startswith(("<!doctype html", "<html")):
        return "an HTML page (a download that returned a web page?)"
    if body.startswith("<"):
        root = re.search(r"<([A-Za-z_][\w:.-]*)[\s>/]", re.sub(r"<[?!][^>]*>", "", body))
        what = f" (root element <{root.group(1)}>)" if root else ""
        return f"an XML document{what} that GDAL does not read as a vector layer"
    if body.startswith(("{", "[")):
        return "JSON that is neither GeoJSON nor CityJSON"
    first = body.splitlines()[0]
    for sep in (",", ";", "\t", "|"):
        if first.count(sep) >= 1:
            columns = [c.strip().strip('"') for c in first.split(sep)][:8]
            return (
                f"text that is not CSV with geometry (columns {', '.join(columns)}): a CSV "
                f"needs a WKT column or X/Y (lon/lat) columns"
            )
    return "plain text"


def describe(path: Path) -> str:
    """What a file looks like, for the message that refuses it: "a PDF document", "a ZIP
    archive without a shapefile ...", "text that is not CSV with geometry ..."."""
    part = _PARTS.get(path.suffix.lower())
    if part is not None and path.with_suffix(part.split("|")[1]).exists():
        what, main = part.split("|")
        return f"a part of a {what}: give its {main} (with its other files beside it)"
    head = read_head(path)
    if not head:
        return "an unreadable or empty file"
    schema = step_schema(head)
    if schema is not None:
        return f"a STEP file of schema {schema or '(none named)'}, not IFC"
    if head.startswith(LASF):
        return "a LAS/LAZ point cloud"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return _zip_members(path)
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return what
    text = _text(head)
    if text is not None:
        return _describe_text(text)
    shown = " ".join(f"{b:02x}" for b in head[:8])
    return f"binary data of an unknown kind (first bytes {shown})"
