-- 006: what each storey contributes to its building's floor count and floor area
-- (ingest/ifc.py). height: to the next storey of the building, for the top one to the top of
-- its elements (m). A storey is counted when it holds walls, columns, curtain walls, slabs or
-- spaces other than the roof and is at least 2.2 m high (GB 50096-2011 4.0.5): a level with
-- only the roof, a foundation level or a parapet level is no floor. floor_area is the area of
-- the union of its elements' outlines, the roof's excluded (m2, model frame);
-- buildings.gross_floor_area sums it over the counted storeys above ground, and
-- storeys_above / storeys_below count the counted storeys. NULL for storeys ingested before.
ALTER TABLE storeys ADD COLUMN height DOUBLE;
ALTER TABLE storeys ADD COLUMN floor_area DOUBLE;
ALTER TABLE storeys ADD COLUMN counted BOOLEAN;
