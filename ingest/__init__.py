"""Ingesters: one package per source kind (``ifc``, ``lidar``, ``gis``), one shape.

``ingest.base`` holds the protocol every ingester keeps and what it is given and returns;
``ingest.run`` the registry and ``run_ingest``, which owns what every kind shares. This module
only hands their names on.
"""

from cim.errors import IngestError
from ingest.base import (
    OPTION_USES,
    Anchor,
    IngestContext,
    Ingester,
    IngestFailureJson,
    IngestOptions,
    IngestReport,
    IngestReportJson,
    IngestResult,
)
from ingest.run import (
    INGESTER_MODULES,
    check_options,
    check_readable,
    choose_ingester,
    file_sha256,
    registry,
    run_ingest,
)

__all__ = [
    "INGESTER_MODULES",
    "OPTION_USES",
    "Anchor",
    "IngestContext",
    "IngestError",
    "IngestFailureJson",
    "IngestOptions",
    "IngestReport",
    "IngestReportJson",
    "IngestResult",
    "Ingester",
    "check_options",
    "check_readable",
    "choose_ingester",
    "file_sha256",
    "registry",
    "run_ingest",
]
