"""The STEP header of an IFC file, checked before ifcopenshell parses it.

ifcopenshell 0.9 reads FILE_SCHEMA's first argument as a list of strings without checking
it: anything else there (a string not in a list, a number, a reference, ``$``, ``*``, an
enumeration, a typed value, a list holding one of those first) crashed the process with a
segmentation fault (found by fuzzing, #22), which no ``except`` can catch. ``check_header``
refuses such a header with a clear error first. What ifcopenshell refuses cleanly by itself
(a header without FILE_SCHEMA, an unknown schema) is left to it.
"""

from __future__ import annotations

import re
from pathlib import Path

from cim.errors import InputFileError

#: how much of a file the header check reads: a header section is a few hundred bytes (long
#: author lists make it a few KB)
HEADER_BYTES = 1 << 20

#: STEP tokens: whitespace, comments, strings ('' escapes a quote), keywords, anything else
#: one byte at a time
_TOKEN = re.compile(rb"\s+|/\*.*?(?:\*/|\Z)|'(?:[^']|'')*(?:'|\Z)|[A-Za-z_][A-Za-z0-9_-]*|.", re.S)


def _tokens(data: bytes) -> list[bytes]:
    out = []
    for m in _TOKEN.finditer(data):
        tok = m.group()
        if tok[:1].isspace() or tok.startswith(b"/*"):
            continue
        out.append(tok)
        if tok.upper() == b"DATA" or len(out) > 100_000:
            break
    return out


def _is_string(tok: bytes) -> bool:
    return len(tok) >= 2 and tok.startswith(b"'") and tok.endswith(b"'")


def check_header(path: Path, head: bytes) -> None:
    """Raise InputFileError naming ``path`` when the header section's FILE_SCHEMA record has
    something other than a list of strings as its first argument (``head``: the file's first
    bytes, at least its header section)."""
    toks = _tokens(head)
    for i, tok in enumerate(toks):
        if tok.upper() == b"DATA":
            return
        if tok.upper() != b"FILE_SCHEMA" or toks[i + 1 : i + 2] != [b"("]:
            continue
        # FILE_SCHEMA ( ( 'A' [, 'B' ...] ) ...
        j = i + 2
        ok = toks[j : j + 1] == [b"("]
        j += 1
        while ok:
            ok = j < len(toks) and _is_string(toks[j])
            j += 1
            if not ok or toks[j : j + 1] != [b","]:
                break
            j += 1
        ok = ok and toks[j : j + 1] == [b")"]
        if not ok:
            shown = b" ".join(toks[i : i + 8])
            raise InputFileError(
                f"{path}: the STEP header is malformed (FILE_SCHEMA must list the schema "
                f"names as strings, e.g. FILE_SCHEMA(('IFC4')); it reads "
                f"{shown.decode('latin-1')[:80]!r}); export the model again"
            )
        return
