-- 012: what the analyzers found (cim/analyze/). One row per analyzer and subject (a building,
-- or 'city' for a roll-up), with the fingerprint of what it read: the sources' sha256, the
-- placement, the rules files' versions and any declaration. A row whose fingerprint no longer
-- matches its inputs is stale; `cim analyze NAME` recomputes only those. source_id is the
-- source the subject came from: re-ingesting that source deletes its rows with the rest.
CREATE TABLE analyses (
    analyzer     VARCHAR NOT NULL,          -- prefab | energy | pv | indicators
    subject      VARCHAR NOT NULL,          -- 'building:<id>' | 'city'
    building_id  BIGINT,
    source_id    INTEGER,                   -- NULL for city-wide rows
    fingerprint  VARCHAR NOT NULL,
    rules        VARCHAR,                   -- the rules files and versions used
    summary      JSON,                      -- the few figures tiles and colouring read
    result       JSON NOT NULL,             -- the full report (schemas/<analyzer>.schema.json)
    job_id       INTEGER,
    computed_at  TIMESTAMP NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (analyzer, subject)
);

-- What a designer declares of a building that a model cannot show (full fit-out, integrated
-- kitchens ...), keyed by the building's GlobalId so that it outlives re-ingesting a revised
-- model. document follows schemas/<analyzer>-declaration.schema.json.
CREATE TABLE declarations (
    analyzer     VARCHAR NOT NULL,
    building_ref VARCHAR NOT NULL,          -- IfcBuilding GlobalId
    document     JSON NOT NULL,
    sha256       VARCHAR NOT NULL,
    file         VARCHAR,                   -- the file it came from
    declared_at  TIMESTAMP NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (analyzer, building_ref)
);
