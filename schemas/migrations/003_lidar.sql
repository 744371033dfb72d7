-- 003: LiDAR point clouds (ingest/lidar.py): the points, one row per LAS/LAZ source, a terrain
-- model per source, and building heights derived from the points.

-- Every point of every cloud, in the project CRS. Rows of each source are inserted in runs of
-- millions of points, each sorted along a Hilbert curve over the cloud (ingest/lidar.py
-- SortGrid), so each row group (122,880 rows) covers a compact area and DuckDB's per-row-group min/max (zone maps) on x and y skip the rest of the table for
-- box and footprint queries. x/y/z are DECIMAL(18,3): exact millimetres stored as integers,
-- which DuckDB compresses with frame-of-reference bit packing (about 7 bytes per point for
-- x+y+z+class, against 20 as DOUBLE). Compare them with DECIMAL(18,3) constants, not DOUBLEs,
-- or the column is cast and the zone maps are not used (ingest.lidar.points_in_box does this).
CREATE TABLE points (
    source_id         INTEGER NOT NULL,
    x                 DECIMAL(18, 3) NOT NULL,  -- project CRS, metres
    y                 DECIMAL(18, 3) NOT NULL,
    z                 DECIMAL(18, 3) NOT NULL,  -- metres, the file's vertical datum
    classification    UTINYINT NOT NULL,        -- ASPRS: 2 ground, 6 building ...
    intensity         USMALLINT,
    return_number     UTINYINT,
    number_of_returns UTINYINT,
    red               USMALLINT,                -- NULL when the point format has no RGB
    green             USMALLINT,
    blue              USMALLINT,
    point_source_id   USMALLINT                 -- LAS point source (flight line) id
);

-- One row per LAS/LAZ source: what the header said and what was found.
CREATE TABLE lidar_sources (
    source_id          INTEGER NOT NULL,
    las_version        VARCHAR NOT NULL,
    point_format       UTINYINT NOT NULL,
    compressed         BOOLEAN NOT NULL,
    header_points      BIGINT NOT NULL,
    points             BIGINT NOT NULL,
    file_crs           VARCHAR,                 -- as found in the file, or as given with --crs
    crs_from           VARCHAR NOT NULL,        -- wkt | geotiff | option
    z_factor           DOUBLE NOT NULL,         -- file z units -> metres
    has_rgb            BOOLEAN NOT NULL,
    has_ground_class   BOOLEAN NOT NULL,
    has_building_class BOOLEAN NOT NULL,
    classes            JSON,                    -- {"2": n, "6": n, ...}
    xmin DOUBLE, ymin DOUBLE, zmin DOUBLE, xmax DOUBLE, ymax DOUBLE, zmax DOUBLE  -- project CRS
);

-- Terrain model of a source: a regular grid from its class-2 (ground) points, gaps interpolated.
-- Cell (i, j) covers [origin_x + i*resolution, +resolution) x [origin_y + j*resolution, ...);
-- z holds float32 little-endian, row-major with ny rows of nx cells, row 0 the southernmost.
CREATE TABLE dtm (
    source_id      INTEGER NOT NULL,
    origin_x       DOUBLE NOT NULL,
    origin_y       DOUBLE NOT NULL,
    resolution     DOUBLE NOT NULL,
    nx             INTEGER NOT NULL,
    ny             INTEGER NOT NULL,
    measured_cells INTEGER NOT NULL,            -- cells with ground points; the rest interpolated
    z              BLOB NOT NULL
);

-- Heights of a building from the class-6 points inside its footprint (all clouds together),
-- like 3D BAG: absolute roof elevations at the 50th/70th/90th percentile and the maximum, the
-- ground level around the footprint, and height = roof_p70 - ground_z. source_id is the
-- building's source, so the rows go when the building does; a LiDAR ingest refreshes the rows
-- of the buildings it covers and of those a replaced cloud covered. status: ok | few_points
-- (under 5 points or 0.5 points/m2) | no_points (class 6 in the cloud, none inside) |
-- no_building_class (the covering clouds have no class 6: heights unavailable, not guessed) |
-- no_coverage (no cloud over it) | no_ground (no terrain around it) | below_ground.
CREATE TABLE building_heights (
    building_id   BIGINT NOT NULL,
    source_id     INTEGER NOT NULL,
    status        VARCHAR NOT NULL CHECK (status IN
                  ('ok', 'few_points', 'no_points', 'no_building_class', 'no_coverage',
                   'no_ground', 'below_ground')),
    n_points      INTEGER NOT NULL,             -- class-6 points inside the footprint
    area          DOUBLE,                       -- footprint area, m2
    density       DOUBLE,                       -- class-6 points per m2 of footprint
    ground_z      DOUBLE,
    ground_method VARCHAR,                      -- dtm_ring (DTM sampled 1 m around the outline)
    roof_p50      DOUBLE,
    roof_p70      DOUBLE,
    roof_p90      DOUBLE,
    roof_max      DOUBLE,
    height        DOUBLE,                       -- roof_p70 - ground_z; NULL unless status = ok
    lidar_sources INTEGER[],                    -- the clouds covering the footprint (by bounds)
    computed_at   TIMESTAMP NOT NULL DEFAULT current_timestamp
);
