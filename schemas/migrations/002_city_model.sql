-- 002: the city model shared by every ingester: buildings, IFC elements and their relations,
-- storeys, meshes, and how each model source is placed in the project CRS.

CREATE SEQUENCE buildings_id_seq START 1;
-- One row per building from any source (IfcBuilding, GIS footprint ...). A building known from
-- several sources is linked: same_as points at the row that represents it (NULL = canonical).
CREATE TABLE buildings (
    id               BIGINT PRIMARY KEY DEFAULT nextval('buildings_id_seq'),
    source_id        INTEGER NOT NULL,
    source_ref       VARCHAR,              -- IfcBuilding GlobalId, GIS feature id ...
    name             VARCHAR,
    use              VARCHAR,
    footprint        GEOMETRY,             -- 2D (Multi)Polygon in the project CRS
    ground_z         DOUBLE,               -- ground elevation, project vertical datum (m)
    height           DOUBLE,               -- metres above ground_z; NULL when unknown (never 0 for unknown)
    height_source    VARCHAR,              -- ifc | attribute | floors | lidar | unknown
    storeys_above    INTEGER,
    storeys_below    INTEGER,
    gross_floor_area DOUBLE,               -- m2
    year_built       INTEGER,
    lod              VARCHAR,              -- BIM | LoD2 | LoD1
    same_as          BIGINT,               -- canonical building when linked
    attributes       JSON,
    xmin DOUBLE, ymin DOUBLE, xmax DOUBLE, ymax DOUBLE
);

-- How a model source (IFC) is placed: model coordinates (metres) -> project CRS.
-- matrix is a row-major 4x4 affine; method is map_conversion | rigid_operation | site_reflatlon
-- | anchor | none. Meshes stay in model coordinates, so `cim place` only rewrites this row and
-- the derived project-CRS columns (footprints, bounding boxes), never re-parses the file.
CREATE TABLE placements (
    source_id  INTEGER PRIMARY KEY,
    method     VARCHAR NOT NULL,
    matrix     DOUBLE[16] NOT NULL,
    params     JSON,                       -- what the placement was computed from
    placed_at  TIMESTAMP NOT NULL DEFAULT current_timestamp
);

CREATE TABLE storeys (
    source_id     INTEGER NOT NULL,
    building_ref  VARCHAR,
    global_id     VARCHAR NOT NULL,
    name          VARCHAR,
    elevation     DOUBLE,                  -- model metres
    above_ground  BOOLEAN
);

CREATE SEQUENCE elements_id_seq START 1;
-- One row per IfcProduct that has a representation (geometry_status ok or failed), plus one per
-- element that aggregates parts without a shape of its own, e.g. an IfcElementAssembly
-- (geometry_status none): its property sets (Tekla's 'Cast unit type') describe the parts.
CREATE TABLE elements (
    id                    BIGINT PRIMARY KEY DEFAULT nextval('elements_id_seq'),
    source_id             INTEGER NOT NULL,
    building_id           BIGINT,
    global_id             VARCHAR NOT NULL,
    ifc_class             VARCHAR NOT NULL,
    predefined_type       VARCHAR,
    name                  VARCHAR,
    object_type           VARCHAR,
    type_name             VARCHAR,           -- name of the IfcTypeObject, if any
    type_class            VARCHAR,
    storey                VARCHAR,
    storey_elevation      DOUBLE,
    materials             JSON,              -- list of material names
    is_external           BOOLEAN,
    load_bearing          BOOLEAN,
    thermal_transmittance DOUBLE,            -- W/(m2.K)
    fire_rating           VARCHAR,
    flags                 JSON,              -- every *Common flag found (occurrence over type)
    psets                 JSON,              -- {pset: {prop: value}} incl. inherited from the type
    qsets                 JSON,              -- {qto: {quantity: value}}
    volume                DOUBLE,            -- m3
    surface_area          DOUBLE,            -- m2
    projected_area        DOUBLE,            -- horizontal projected area m2
    height                DOUBLE,            -- m
    quantity_source       JSON,              -- {"volume": "qto"|"mesh", ...}
    geometry_status       VARCHAR NOT NULL CHECK (geometry_status IN ('ok', 'failed', 'none')),
    geometry_error        VARCHAR,
    xmin DOUBLE, ymin DOUBLE, zmin DOUBLE, xmax DOUBLE, ymax DOUBLE, zmax DOUBLE  -- project CRS
);

-- aggregates (assembly -> part), fills (opening element -> window/door), voids (wall -> opening),
-- hosts (wall -> window, the composition of voids and fills), contains (storey -> element)
CREATE TABLE element_relations (
    source_id    INTEGER NOT NULL,
    kind         VARCHAR NOT NULL,
    relating_guid VARCHAR NOT NULL,
    related_guid  VARCHAR NOT NULL
);

CREATE SEQUENCE meshes_id_seq START 1;
-- Triangle meshes. positions are float32 xyz offsets from origin_* (float64); for
-- owner = 'element' the frame is the model's coordinates (apply placements.matrix),
-- for owner = 'building' it is the project CRS.
CREATE TABLE meshes (
    id           BIGINT PRIMARY KEY DEFAULT nextval('meshes_id_seq'),
    source_id    INTEGER NOT NULL,
    owner        VARCHAR NOT NULL CHECK (owner IN ('element', 'building')),
    owner_id     BIGINT NOT NULL,
    origin_x DOUBLE NOT NULL, origin_y DOUBLE NOT NULL, origin_z DOUBLE NOT NULL,
    n_vertices   INTEGER NOT NULL,
    n_triangles  INTEGER NOT NULL,
    positions    BLOB NOT NULL,            -- float32[n_vertices*3]
    normals      BLOB NOT NULL,            -- float32[n_vertices*3]
    indices      BLOB NOT NULL,            -- uint32[n_triangles*3]
    material_ids BLOB,                     -- uint16[n_triangles], index into materials
    materials    JSON                      -- [{"name": ..., "rgba": [r, g, b, a]}]
);
