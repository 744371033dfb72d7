"""The project's exceptions: one root, each carrying its exit code and HTTP status.

Errors are translated exactly twice: by the CLI (one line, exit code) and by the API's
exception handler (one JSON shape). Library code raises them and never prints or exits.
Subclasses also inherit the matching builtin so callers can catch either.
"""

from __future__ import annotations


class CimError(Exception):
    """Root of every error a user can cause. ``str(err)`` is the user-facing message."""

    exit_code: int = 1
    http_status: int = 400
    code: str = "cim_error"

    def __init__(self, message: str, *, detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: internal detail (kept apart from the message shown to the user)
        self.detail = detail

    def __str__(self) -> str:
        return self.message


class StoreError(CimError, RuntimeError):
    """The store cannot be opened, created or migrated."""

    exit_code = 3
    http_status = 500
    code = "store_error"


class StoreNotFound(StoreError, FileNotFoundError):
    exit_code = 3
    http_status = 404
    code = "store_not_found"


class StoreLocked(StoreError):
    """Another process holds the store's write lock."""

    exit_code = 4
    http_status = 409
    code = "store_locked"


class SchemaVersionError(StoreError):
    """The store was written by a newer version of this tool."""

    code = "schema_version"


class CrsError(CimError, ValueError):
    """A coordinate reference system is unknown, missing, or unsuitable."""

    code = "crs_error"


class InputFileError(CimError, ValueError):
    """A file to ingest is missing, corrupt, empty or of an unsupported kind or schema."""

    exit_code = 2
    http_status = 422
    code = "input_file"


class UnsupportedFile(InputFileError):
    code = "unsupported_file"


class NotFound(CimError, LookupError):
    """A source, job or building named by the user does not exist."""

    http_status = 404
    code = "not_found"


class SourceNotFound(NotFound):
    """No source has the id, file name or path the user gave."""

    code = "source_not_found"


class Conflict(CimError):
    """What was asked does not fit the thing it names as it is now (an IFC model to replace a
    GIS layer; a file name that matches several of the user's uploads)."""

    exit_code = 2
    http_status = 409
    code = "conflict"


class UsageError(CimError, ValueError):
    """Arguments that do not fit together."""

    exit_code = 2
    code = "usage"


class IngestError(CimError, RuntimeError):
    """An ingester failed on a file for a reason it did not anticipate."""

    code = "ingest_failed"
    http_status = 500


class JobError(CimError, RuntimeError):
    code = "job_error"
    http_status = 500
