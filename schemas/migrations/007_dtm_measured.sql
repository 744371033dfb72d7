-- 007: which cells of a terrain model were measured (had ground points) and which were filled
-- in: np.packbits of the (ny, nx) mask, row-major like z, bit order little. Where the terrain
-- models of several clouds overlap (flight strips, tile edges), the ground is taken from the
-- one measured there, not from another's filled-in cells (ingest.lidar._ground_at).
-- NULL for models ingested before: all their cells count as measured.
ALTER TABLE dtm ADD COLUMN measured BLOB;
