-- 013: what the energy analyzer (cim/analyze/energy.py) needs of an element beyond its sets:
-- attributes: the IFC attributes that size it, in metres ({"OverallWidth": 1.2,
--   "OverallHeight": 1.5} of a window or door); NULL when it has none.
-- layers: its material layers, outside to inside as the model orders them, each
--   {"material": name, "thickness": m, "conductivity": W/(m.K) or null} (conductivity from the
--   material's Pset_MaterialThermal, IFC2X3: IfcThermalMaterialProperties); NULL when the
--   element has no layer set. Elements ingested before this migration have NULL in both until
--   their source is ingested again.
ALTER TABLE elements ADD COLUMN attributes JSON;
ALTER TABLE elements ADD COLUMN layers JSON;
