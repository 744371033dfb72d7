-- Baseline schema of the CIM store (schema version 1).
-- A new store applies this file, then every file in schemas/migrations/ in order; an older
-- store applies the migrations it has not seen. The schema version is the number of the last
-- migration applied (meta.schema_version). Coordinates are in the project CRS (meta.crs).

CREATE TABLE meta (
    key   VARCHAR PRIMARY KEY,
    value VARCHAR NOT NULL
);

CREATE SEQUENCE sources_id_seq START 1;
-- Every ingested file. sha256 identifies the bytes: the same bytes twice is a no-op, a changed
-- file at the same path replaces the rows of the old source in one transaction.
CREATE TABLE sources (
    id          INTEGER PRIMARY KEY DEFAULT nextval('sources_id_seq'),
    path        VARCHAR NOT NULL,           -- absolute path at ingest time
    name        VARCHAR NOT NULL,           -- file name
    kind        VARCHAR NOT NULL,           -- ifc | lidar | gis
    format      VARCHAR,                    -- e.g. IFC4, LAS 1.4 PF8 (LAZ), GPKG
    sha256      VARCHAR NOT NULL,
    size_bytes  BIGINT NOT NULL,
    crs         VARCHAR,                    -- the file's own CRS (as found or as given)
    status      VARCHAR NOT NULL CHECK (status IN ('ingested', 'needs_placement')),
    counts      JSON,                       -- kind-specific counts, e.g. {"products": 83, "meshed": 80, "failed": 3}
    options     JSON,                       -- the options it was ingested with (crs, role, layer, anchor ...)
    warnings    JSON,                       -- list of strings the user should read
    job_id      INTEGER,
    ingested_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);

CREATE SEQUENCE jobs_id_seq START 1;
-- Every long command runs as a job. A job left 'queued' or 'running' by a process that died is
-- marked failed when the store is next opened for writing; its work was never committed.
CREATE TABLE jobs (
    id          INTEGER PRIMARY KEY DEFAULT nextval('jobs_id_seq'),
    kind        VARCHAR NOT NULL,           -- ingest | place | analyze | tile ...
    args        JSON,
    status      VARCHAR NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed')),
    progress    DOUBLE NOT NULL DEFAULT 0 CHECK (progress >= 0 AND progress <= 1),
    message     VARCHAR,
    error       VARCHAR,
    result      JSON,
    pid         INTEGER,
    pid_started DOUBLE,                     -- process start time (seconds since epoch), guards against pid reuse
    host        VARCHAR,
    created_at  TIMESTAMP NOT NULL DEFAULT current_timestamp,
    started_at  TIMESTAMP,
    finished_at TIMESTAMP
);
