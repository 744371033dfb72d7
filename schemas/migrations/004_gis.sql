-- 004: GIS layers. Building footprints go to `buildings` (002) as LoD1 rows; every other role
-- (roads, land cover, parks, points of interest, boundaries) goes to `features`.
--
-- Spatial access is by the bbox columns, not an RTREE index: rows are inserted sorted by a
-- Hilbert key of their bbox, so DuckDB's per-row-group min/max (zone maps) on xmin..ymax skip
-- most of the table for a bbox query (4-20 ms vs 280 ms for a full ST_Intersects scan of 1M
-- rows here). An RTREE index on `geom` was measured and rejected: replacing a source of 100k
-- rows (transactional DELETE + INSERT) took 303 s with the index against 1.6 s for 1M without.

CREATE SEQUENCE features_id_seq START 1;
CREATE TABLE features (
    id          BIGINT PRIMARY KEY DEFAULT nextval('features_id_seq'),
    source_id   INTEGER NOT NULL,
    role        VARCHAR NOT NULL CHECK (role IN ('roads', 'landcover', 'parks', 'pois', 'boundary')),
    layer       VARCHAR,                   -- layer name in the source file
    source_ref  VARCHAR,                   -- layer:feature id in the source file
    name        VARCHAR,
    kind        VARCHAR,                   -- class within the role: road class, land-cover type, POI category
    attributes  JSON,                      -- the feature's original attributes
    geom        GEOMETRY NOT NULL,         -- 2D, project CRS
    xmin DOUBLE, ymin DOUBLE, xmax DOUBLE, ymax DOUBLE
);

-- green-building star rating (绿色建筑星级, 0-3) where a layer gives it
ALTER TABLE buildings ADD COLUMN green_star INTEGER;
