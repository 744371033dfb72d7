-- 008: points in Parquet files managed by the store, beside it in `<store file>.points/`
-- (cim/store.py). Writing DuckDB's own row groups cost 120-165 ns of CPU a point, more than
-- decoding a LAS file; the ingest's workers now encode each part of a cloud as a Parquet file
-- (sorted, 16 Hilbert runs of row groups) and the single writer only adds the files (measured
-- in ingest/lidar.py). One row per file; `point_rows` becomes a view over the files, rebuilt in
-- the same transaction whenever they change (Store.refresh_point_view), and `points` reads it
-- as before. The files of a source are deleted after the commit that drops them; files no row
-- names (a crash mid-ingest) are removed when the store is next opened for writing.
-- The rows of point_rows are moved to files by the Python step of this migration
-- (cim.store._migrate_point_rows), run after this script in the same transaction.
CREATE TABLE point_files (
    source_id   INTEGER NOT NULL,
    file        VARCHAR PRIMARY KEY,   -- name inside the points folder
    points      BIGINT NOT NULL,
    bytes       BIGINT NOT NULL,
    row_groups  INTEGER NOT NULL,
    xmin DOUBLE, ymin DOUBLE, zmin DOUBLE, xmax DOUBLE, ymax DOUBLE, zmax DOUBLE
);
