-- 009: `points_in(files)`, the columns of `points` read from some point files only. A query
-- that knows its box asks point_files which files' bounds meet it (Store.points_from) and reads
-- those: `points` reads every file's footer for every query (a 50 m box over 1,000 files of
-- 60,000 points: 32-44 ms; over the one file it needs: 1-3 ms). The unpacking is migration
-- 005's `points` view, over read_parquet as migration 008's `point_rows` reads the files.
CREATE MACRO points_in(files) AS TABLE
SELECT source_id, x, y, z, classification,
       (attributes & 65535)::USMALLINT AS intensity,
       ((attributes >> 16) & 15)::UTINYINT AS return_number,
       ((attributes >> 20) & 15)::UTINYINT AS number_of_returns,
       (rgb & 65535)::USMALLINT AS red,
       ((rgb >> 16) & 65535)::USMALLINT AS green,
       ((rgb >> 32) & 65535)::USMALLINT AS blue,
       ((attributes >> 24) & 65535)::USMALLINT AS point_source_id
FROM read_parquet(files, hive_partitioning = true, hive_types = {'source_id': INTEGER});
