// The one map (一张图): the store's 3D Tiles (city buildings, BIM models, point clouds) and its
// GIS layers (OGC API - Features) in one CesiumJS scene, with a building panel, colouring by
// attribute, search, sign-in, IFC uploads and the jobs view.
//
// Nothing is fetched off this server: CesiumJS and its assets come from /cesium/, the base
// layer is the Natural Earth II texture of the Cesium build, there is no terrain and no ion.
// ?lite=1 turns off the sky, the atmosphere and image-based lighting (for software-rendered
// browsers, e.g. the headless tests).
//
// window.cim is for tests and the console: {ready, viewer, tilesets, layers, settle(), pickAt(),
// findFeature(), errors, flights}.

import { ApiError, followJob, getJson, setToken, token, uploadFile } from "./api.js";
import { energyNodes, pvFacetNodes, pvNodes } from "./analyses.js";
import { ATTRIBUTES, pvFacetLegend, renderLegend, styleFor } from "./colour.js";
import { applyLabels, currentLang, onLangChange, setLang, t } from "./i18n.js";
import { fmt, heading, none, row, table, withUnit } from "./panel.js";
import { initIndicators } from "./indicators.js";

const Cesium = window.Cesium;
const params = new URLSearchParams(window.location.search);
const LITE = params.get("lite") === "1";
// a fixed sun (midsummer noon in Tongliao): the city is lit the same way at any hour
const NOON = Cesium.JulianDate.fromIso8601("2025-06-21T04:00:00Z");
const $ = (id) => document.getElementById(id);

const TILESET_LAYERS = ["buildings", "bim", "points", "pv"];
const GIS_LAYERS = ["roads", "landcover", "parks", "pois", "boundary"];
const LAYER_COLOURS = {
  buildings: "#e9e4d8",
  bim: "#6fa8dc",
  points: "#9c7fd1",
  pv: "#e3591c",
  roads: "#f6f3ec",
  landcover: "#c6d7a1",
  parks: "#6cbf6a",
  pois: "#e4572e",
  boundary: "#ff8a3d",
};
// the city shows BIM buildings whole (on: element by element) and no PV facets (on: every roof
// facet the PV analyzer found, coloured by its yield)
const DEFAULT_OFF = new Set(["bim", "pv"]);
const HIGHLIGHT = Cesium.Color.fromCssColorString("#ffd400");

const state = {
  origin: null,
  ground: 0,
  tilesets: {}, // name -> Cesium3DTileset
  available: {}, // layer -> {count?, state?} when the store has it
  sources: {}, // GIS layer -> GeoJsonDataSource
  visible: {},
  colour: "none",
  uses: null,
  me: null,
  replaceable: null, // {id, name}: the uploaded IFC source of the shown building this token may replace
  selected: null, // {feature, colour}
  home: null,
};
const errors = [];
const cim = { errors, state, flights: Promise.resolve() };
window.cim = cim;

// -- the viewer ------------------------------------------------------------------------------

function naturalEarth() {
  const url = Cesium.buildModuleUrl("Assets/Textures/NaturalEarthII");
  return Cesium.ImageryLayer.fromProviderAsync(
    Cesium.TileMapServiceImageryProvider.fromUrl(url),
  );
}

const viewer = new Cesium.Viewer("map", {
  baseLayer: naturalEarth(),
  baseLayerPicker: false,
  geocoder: false,
  animation: false,
  timeline: false,
  homeButton: true,
  sceneModePicker: false,
  navigationHelpButton: false,
  fullscreenButton: false,
  infoBox: false,
  selectionIndicator: false,
  shouldAnimate: false,
  // draw only when something changes: idle pages leave the CPU (and laptops' fans) alone
  requestRenderMode: true,
  maximumRenderTimeChange: Infinity,
});
cim.viewer = viewer;
const scene = viewer.scene;
scene.globe.baseColor = Cesium.Color.fromCssColorString("#9aa79a");
scene.globe.depthTestAgainstTerrain = false;
scene.screenSpaceCameraController.minimumZoomDistance = 5;
viewer.clock.currentTime = NOON;
viewer.clock.shouldAnimate = false;
if (LITE) {
  scene.skyBox.show = false;
  scene.skyAtmosphere.show = false;
  scene.sun.show = false;
  scene.moon.show = false;
  scene.fog.enabled = false;
  scene.globe.showGroundAtmosphere = false;
  scene.backgroundColor = Cesium.Color.fromCssColorString("#1a2a3a");
}
scene.renderError.addEventListener((_s, e) => errors.push(`render: ${e}`));
viewer.homeButton.viewModel.command.beforeExecute.addEventListener((e) => {
  e.cancel = true;
  flyHome();
});

function tilesetOptions() {
  return {
    maximumScreenSpaceError: 16,
    // reflections of the atmosphere on every model: costly, and grey buildings gain little
    environmentMapOptions: { enabled: false },
    ...(LITE
      ? {
          imageBasedLighting: new Cesium.ImageBasedLighting({
            imageBasedLightingFactor: Cesium.Cartesian2.ZERO,
          }),
        }
      : {}),
  };
}

function nextFrame() {
  return new Promise((resolve) => {
    const remove = scene.postRender.addEventListener(() => {
      remove();
      resolve();
    });
    scene.requestRender();
  });
}

// Resolves once every shown tileset has the tiles of the current view and two more frames
// are drawn.
cim.settle = async function settle(timeoutMs = 60000) {
  const start = performance.now();
  for (;;) {
    await nextFrame();
    const all = Object.values(state.tilesets);
    if (all.every((ts) => !ts.show || ts.tilesLoaded)) break;
    if (performance.now() - start > timeoutMs) throw new Error("tiles still loading");
  }
  await nextFrame();
  await nextFrame();
};

// -- messages --------------------------------------------------------------------------------

let toastTimer = null;
function toast(text, isError = false) {
  const el = $("toast");
  el.textContent = text;
  el.classList.toggle("error", isError);
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (el.hidden = true), isError ? 7000 : 3500);
}

function message(e) {
  return e instanceof Error ? e.message : String(e);
}

// -- tilesets --------------------------------------------------------------------------------

async function addTileset(entry) {
  const url = `${entry.url}?v=${entry.generation}`;
  const tileset = await Cesium.Cesium3DTileset.fromUrl(url, tilesetOptions());
  tileset.tileFailed.addEventListener((e) => {
    errors.push(`${entry.name}: ${e.message} (${e.url})`);
    toast(t("layerFailed", { msg: entry.name }), true);
  });
  tileset.show = state.visible[entry.name] ?? !DEFAULT_OFF.has(entry.name);
  state.visible[entry.name] = tileset.show;
  const initial = new Promise((resolve) => tileset.initialTilesLoaded.addEventListener(resolve));
  scene.primitives.add(tileset);
  state.tilesets[entry.name] = tileset;
  return { tileset, initial };
}

async function loadTilesets() {
  const info = await getJson("/api/tilesets");
  state.origin = info.origin;
  for (const old of Object.values(state.tilesets)) scene.primitives.remove(old);
  state.tilesets = {};
  clearSelection();
  for (const name of TILESET_LAYERS) delete state.available[name];
  const usable = info.tilesets.filter((e) => e.state !== "missing");
  for (const e of usable) state.available[e.name] = { tiles: e.tiles, state: e.state };
  const added = await Promise.all(usable.map(addTileset));
  applyStyle();
  renderLayers();
  renderPvLegend();
  return added;
}

function homeSphere() {
  const shown = ["buildings", "bim", "points"]
    .map((n) => state.tilesets[n])
    .filter((ts) => ts);
  const first = shown[0];
  return first ? first.boundingSphere : null;
}

function flyHome(duration = 1.5) {
  const sphere = homeSphere();
  if (!sphere) {
    const { lon, lat } = state.origin || { lon: 122.26, lat: 43.62 };
    viewer.camera.flyTo({ destination: Cesium.Cartesian3.fromDegrees(lon, lat, 6.5e6), duration });
    return;
  }
  // a little above the roofs, looking across the city towards the horizon
  const range = Math.max(sphere.radius * 2.2, 150);
  viewer.camera.flyToBoundingSphere(sphere, {
    offset: new Cesium.HeadingPitchRange(Cesium.Math.toRadians(25), Cesium.Math.toRadians(-17), range),
    duration,
  });
}

// -- GIS layers (OGC API - Features) -------------------------------------------------------

async function ogcCollections() {
  try {
    const doc = await getJson("/ogc/collections");
    for (const c of doc.collections) {
      if (GIS_LAYERS.includes(c.id)) state.available[c.id] = { count: c.count };
    }
  } catch (e) {
    toast(t("loadFailed", { msg: message(e) }), true);
  }
}

async function fetchAll(role) {
  let url = `/ogc/collections/${role}/items?limit=1000`;
  const features = [];
  for (let page = 0; url && page < 50; page += 1) {
    const doc = await getJson(url);
    features.push(...doc.features);
    const next = (doc.links || []).find((l) => l.rel === "next");
    // the server's own link, kept on this origin whatever host name the server thinks it has
    const href = next ? new URL(next.href, window.location.href) : null;
    url = href ? href.pathname + href.search : null;
  }
  return { type: "FeatureCollection", features };
}

// coordinates given a height (the city's ground), so layers lie under the buildings
function lift(geometry, z) {
  const walk = (c) => (typeof c[0] === "number" ? [c[0], c[1], z] : c.map(walk));
  if (!geometry) return geometry;
  if (geometry.type === "GeometryCollection") {
    return { ...geometry, geometries: geometry.geometries.map((g) => lift(g, z)) };
  }
  return { ...geometry, coordinates: walk(geometry.coordinates) };
}

const GIS_STYLE = {
  roads: { z: 0.4, stroke: "#fbf8f1", width: 3 },
  landcover: { z: 0.1, fill: "#c6d7a1", alpha: 0.6 },
  parks: { z: 0.2, fill: "#6cbf6a", alpha: 0.75 },
  pois: { z: 4 },
  boundary: { z: 0.6, stroke: "#ff8a3d", width: 3 },
};

async function loadGisLayer(role) {
  const style = GIS_STYLE[role];
  const data = await fetchAll(role);
  for (const f of data.features) f.geometry = lift(f.geometry, state.ground + style.z);
  const source = await Cesium.GeoJsonDataSource.load(data, {
    clampToGround: false,
    stroke: Cesium.Color.fromCssColorString(style.stroke || "#555555"),
    strokeWidth: style.width || 2,
    fill: Cesium.Color.fromCssColorString(style.fill || "#ffffff").withAlpha(style.alpha ?? 0.5),
  });
  source.name = role;
  const height = state.ground + style.z;
  for (const entity of source.entities.values) {
    entity.cimRole = role;
    if (entity.polygon) {
      if (role === "boundary") {
        const hierarchy = entity.polygon.hierarchy.getValue(Cesium.JulianDate.now());
        entity.polyline = new Cesium.PolylineGraphics({
          positions: [...hierarchy.positions, hierarchy.positions[0]],
          width: style.width,
          material: new Cesium.PolylineDashMaterialProperty({
            color: Cesium.Color.fromCssColorString(style.stroke),
            dashLength: 24,
          }),
        });
        entity.polygon = undefined;
      } else {
        entity.polygon.height = height;
        entity.polygon.perPositionHeight = false;
        entity.polygon.outline = false;
      }
    }
    if (entity.billboard) {
      entity.billboard = undefined;
      entity.point = new Cesium.PointGraphics({
        pixelSize: 10,
        color: Cesium.Color.fromCssColorString(LAYER_COLOURS.pois),
        outlineColor: Cesium.Color.WHITE,
        outlineWidth: 2,
        disableDepthTestDistance: Number.POSITIVE_INFINITY,
      });
      const name = entity.properties && entity.properties.name && entity.properties.name.getValue();
      if (name) {
        entity.label = new Cesium.LabelGraphics({
          text: String(name),
          font: "13px sans-serif",
          fillColor: Cesium.Color.fromCssColorString("#1d2733"),
          showBackground: true,
          backgroundColor: Cesium.Color.WHITE.withAlpha(0.88),
          backgroundPadding: new Cesium.Cartesian2(6, 3),
          pixelOffset: new Cesium.Cartesian2(0, -18),
          disableDepthTestDistance: Number.POSITIVE_INFINITY,
          distanceDisplayCondition: new Cesium.DistanceDisplayCondition(0, 6000),
        });
      }
    }
  }
  await viewer.dataSources.add(source);
  state.sources[role] = source;
  return source;
}

async function showGisLayer(role, show) {
  state.visible[role] = show;
  if (show && !state.sources[role]) {
    setLayerBusy(role, true);
    try {
      await loadGisLayer(role);
    } catch (e) {
      toast(t("layerFailed", { msg: message(e) }), true);
      state.visible[role] = false;
    } finally {
      setLayerBusy(role, false);
    }
  }
  if (state.sources[role]) state.sources[role].show = state.visible[role];
  renderLayers();
  scene.requestRender();
}

async function findGround() {
  // the city's ground elevation, for the GIS layers: the first building's
  try {
    const page = await getJson("/api/buildings?limit=1");
    if (page.items.length) {
      const b = await getJson(`/api/buildings/${page.items[0].id}`);
      if (Number.isFinite(b.ground_z)) state.ground = b.ground_z;
    }
  } catch (_e) {
    state.ground = 0;
  }
}

// -- the layer panel -------------------------------------------------------------------------

const busy = new Set();
function setLayerBusy(name, on) {
  if (on) busy.add(name);
  else busy.delete(name);
  renderLayers();
}

function renderLayers() {
  const list = $("layers");
  list.replaceChildren(
    ...[...TILESET_LAYERS, ...GIS_LAYERS].map((name) => {
      const li = document.createElement("li");
      li.dataset.layer = name;
      const have = name in state.available;
      li.classList.toggle("missing", !have);
      if (!have) li.title = t("layerMissing");
      const label = document.createElement("label");
      const box = document.createElement("input");
      box.type = "checkbox";
      box.disabled = !have || busy.has(name);
      box.checked = have && Boolean(state.visible[name]);
      box.addEventListener("change", () => toggleLayer(name, box.checked));
      const dot = document.createElement("span");
      dot.className = "dot";
      dot.style.background = have ? LAYER_COLOURS[name] : "#d5dae0";
      const text = document.createElement("span");
      text.textContent = t(`layer_${name}`);
      label.append(box, dot, text);
      li.append(label);
      const info = state.available[name];
      const count = document.createElement("span");
      count.className = "count";
      if (busy.has(name)) count.textContent = "…";
      else if (info && info.count !== undefined) count.textContent = String(info.count);
      li.append(count);
      return li;
    }),
  );
}

// the PV facets' legend (tiles/pv.py colours), under the layer list while they show
function renderPvLegend() {
  const on = Boolean(state.tilesets.pv && state.visible.pv);
  renderLegend($("pv-legend"), on ? pvFacetLegend() : []);
}

function toggleLayer(name, show) {
  if (TILESET_LAYERS.includes(name)) {
    state.visible[name] = show;
    if (state.tilesets[name]) state.tilesets[name].show = show;
    if (name === "bim") applyStyle();
    scene.requestRender();
    renderLayers();
    renderPvLegend();
  } else {
    showGisLayer(name, show);
  }
}

// -- colouring ---------------------------------------------------------------------------------

function renderColourOptions() {
  const select = $("colour");
  select.replaceChildren(
    ...ATTRIBUTES.map((k) => {
      const o = document.createElement("option");
      o.value = k;
      o.textContent = t(`colour_${k}`);
      return o;
    }),
  );
  select.value = state.colour;
}

async function loadUses() {
  const counts = new Map();
  for (let offset = 0; offset < 5000; offset += 1000) {
    const page = await getJson(`/api/buildings?limit=1000&offset=${offset}`);
    for (const b of page.items) if (b.use) counts.set(b.use, (counts.get(b.use) || 0) + 1);
    if (offset + page.items.length >= page.total) break;
  }
  state.uses = [...counts.entries()].sort((a, b) => b[1] - a[1]).map(([u]) => u);
}

function applyStyle() {
  const buildings = state.tilesets.buildings;
  const hideBim = Boolean(state.visible.bim && state.tilesets.bim);
  const { style, legend } = styleFor(state.colour, { hideBim, uses: state.uses || [] });
  if (buildings) buildings.style = style;
  state.selected = null;
  renderLegend($("legend"), legend);
  scene.requestRender();
}

async function setColour(key) {
  state.colour = key;
  if (key === "use" && !state.uses) {
    try {
      await loadUses();
    } catch (e) {
      toast(t("loadFailed", { msg: message(e) }), true);
      state.uses = [];
    }
  }
  applyStyle();
}

// -- picking and the detail panel --------------------------------------------------------------

function clearSelection() {
  const s = state.selected;
  if (s && s.feature) {
    try {
      s.feature.color = s.colour;
    } catch (_e) {
      // its tile was unloaded
    }
  }
  state.selected = null;
}

function highlight(feature) {
  clearSelection();
  state.selected = { feature, colour: Cesium.Color.clone(feature.color) };
  feature.color = HIGHLIGHT;
  scene.requestRender();
}

function plain(v) {
  if (typeof v === "bigint") return Number(v);
  return v;
}

function tilesetName(tileset) {
  return Object.keys(state.tilesets).find((k) => state.tilesets[k] === tileset) || null;
}

// The feature at canvas CSS pixel (x, y): {layer, properties} or null.
cim.pickAt = function pickAt(x, y) {
  const picked = scene.pick(new Cesium.Cartesian2(x, y));
  if (!Cesium.defined(picked)) return null;
  if (picked instanceof Cesium.Cesium3DTileFeature) {
    const properties = {};
    for (const id of picked.getPropertyIds()) properties[id] = plain(picked.getProperty(id));
    return { layer: tilesetName(picked.tileset), properties };
  }
  if (picked.id instanceof Cesium.Entity) return { layer: picked.id.cimRole || null, properties: {} };
  return null;
};

// A page pixel {x, y} over a feature of `layer` (and with property `key`): the canvas scanned
// on a grid, from its centre outwards; null when none shows.
cim.findFeature = function findFeature(layer, key = "id", steps = 12) {
  const canvas = scene.canvas;
  const rect = canvas.getBoundingClientRect();
  const cells = [];
  for (let j = 1; j < steps; j += 1) {
    for (let i = 1; i < steps; i += 1) cells.push([i / steps, j / steps]);
  }
  cells.sort((a, b) => Math.hypot(a[0] - 0.5, a[1] - 0.5) - Math.hypot(b[0] - 0.5, b[1] - 0.5));
  for (const [fx, fy] of cells) {
    const x = canvas.clientWidth * fx;
    const y = canvas.clientHeight * fy;
    const hit = cim.pickAt(x, y);
    if (hit && hit.layer === layer && key in hit.properties) {
      return { x: rect.left + x, y: rect.top + y, properties: hit.properties };
    }
  }
  return null;
};

function openDetail(kind, title, id, nodes) {
  $("detail-kind").textContent = t(kind);
  $("detail-title").textContent = title;
  const panel = $("detail");
  panel.dataset.kind = kind;
  panel.dataset.id = String(id);
  $("detail-body").replaceChildren(...nodes);
  panel.hidden = false;
}

function closeDetail() {
  $("detail").hidden = true;
  delete $("detail").dataset.id;
  cim.shown = null;
  offerReplace(null);
  clearSelection();
  scene.requestRender();
}

function analysisSection(analyses) {
  const nodes = [heading("analyses")];
  const keys = ["prefab", "energy", "pv", ...Object.keys(analyses || {})].filter(
    (k, i, all) => all.indexOf(k) === i,
  );
  const extra = [];
  const rows = keys.map((k) => {
    const result = analyses && analyses[k];
    if (k === "prefab" && result && result.result) {
      extra.push(...prefabNodes(result.result));
      const r = result.result;
      const text = `${r.rate === null ? "—" : `${fmt(r.rate, 1)} %`} · ${r.grade || t("prefab_no_grade")}`;
      return row(t("analysis_prefab"), text);
    }
    if (k === "energy" && result && result.result) {
      extra.push(...energyNodes(result.result));
      const r = result.result;
      return row(t("analysis_energy"), `${t(`energy_${r.status}`)} · ${r.climate.zone_zh || "—"}`);
    }
    if (k === "pv" && result && result.result) {
      const r = result.result;
      extra.push(...pvNodes(r));
      return row(t("analysis_pv"), `${fmt(r.kwp, 1)} kWp · ${fmt(r.kwh_per_year, 0)} kWh`);
    }
    const label = t(`analysis_${k}`) === `analysis_${k}` ? k : t(`analysis_${k}`);
    if (!result) {
      const span = document.createElement("span");
      span.className = "none";
      span.textContent = t("notComputed");
      return row(label, span);
    }
    const summary =
      typeof result === "object"
        ? Object.entries(result)
            .filter(([, v]) => typeof v !== "object")
            .slice(0, 4)
            .map(([kk, v]) => `${kk}: ${typeof v === "number" ? fmt(v, 2) : v}`)
            .join(" · ")
        : String(result);
    return row(label, summary);
  });
  nodes.push(table(rows), ...extra);
  return nodes;
}

// The assembly rate's breakdown (cim/analyze/prefab.py, schemas/prefab.schema.json): the
// verdict, each item's ratio and points, what is missing, and the what-if.
function prefabNodes(r) {
  const nodes = [];
  const h = document.createElement("h4");
  h.textContent = t("prefab_title");
  nodes.push(h);
  const verdict = document.createElement("p");
  verdict.className = "prefab-verdict";
  verdict.dataset.prefabricated = String(r.prefabricated);
  verdict.textContent = `P = ${r.rate === null ? "—" : fmt(r.rate, 1)} % · ${
    r.grade ? t("prefab_grade", { g: r.grade }) : t("prefab_no_grade")
  } · ${r.prefabricated ? t("prefab_yes") : t("prefab_no")}`;
  nodes.push(verdict);
  const zh = currentLang() === "zh";
  const items = Object.entries(r.items || {}).map(([key, it]) => {
    const ratio =
      it.ratio === null || it.ratio === undefined
        ? it.state === "absent"
          ? t("prefab_absent")
          : t("prefab_undeclared")
        : typeof it.ratio === "boolean"
          ? it.ratio
            ? "✓"
            : "✗"
          : `${fmt(100 * it.ratio, 1)} %`;
    const tr = row(zh ? it.name_zh : it.name_en || key, `${ratio} → ${fmt(it.points, 1)} / ${it.max_points}`);
    tr.dataset.item = key;
    if (it.why) tr.title = it.why;
    return tr;
  });
  const g = r.groups || {};
  items.push(row("Q1 · Q2 · Q3 · Q4", `${g.Q1} · ${g.Q2} · ${g.Q3} · ${g.Q4}`));
  nodes.push(table(items));
  if ((r.verdict_reasons || []).length) {
    const ul = document.createElement("ul");
    ul.className = "reasons";
    for (const reason of r.verdict_reasons) {
      const li = document.createElement("li");
      li.textContent = reason;
      ul.append(li);
    }
    nodes.push(ul);
  }
  for (const w of r.what_if || []) {
    const p = document.createElement("p");
    p.className = "what-if";
    if (w.already) p.textContent = t("prefab_whatif_done", { v: w.target });
    else if (!w.reached) p.textContent = t("prefab_whatif_out", { v: w.target });
    else
      p.textContent = t("prefab_whatif", {
        v: w.target,
        groups: w.switch.map((s) => `${s.group} (${s.members})`).join(", "),
        p: fmt(w.rate_after, 1),
      });
    nodes.push(p);
  }
  const src = document.createElement("p");
  src.className = "none";
  src.textContent = r.rules ? r.rules.table : "";
  nodes.push(src);
  return nodes;
}

function buildingNodes(b) {
  const nodes = [];
  nodes.push(
    table([
      row(t("attr_id"), b.id),
      row(t("attr_name"), b.name),
      row(t("attr_use"), b.use),
      row(t("attr_height"), withUnit(b.height, "m"), true),
      row(t("attr_floors"), b.storeys_above, true),
      ...(b.storeys_below ? [row(t("attr_floors_below"), b.storeys_below, true)] : []),
      row(t("attr_gfa"), withUnit(b.gross_floor_area, "m²", 0), true),
      row(t("attr_footprint"), withUnit(b.footprint_area, "m²", 0), true),
      row(t("attr_year"), b.year_built),
      ...(b.green_star ? [row(t("attr_green_star"), "★".repeat(b.green_star))] : []),
      row(t("attr_lod"), b.lod),
      row(t("attr_height_source"), b.height_source),
      row(t("attr_ground"), b.ground_source === "default" ? null : withUnit(b.ground_z, "m"), true),
    ]),
  );
  nodes.push(heading("sources"));
  nodes.push(table((b.sources || []).map((s) => row(`${s.kind}${s.format ? ` · ${s.format}` : ""}`, s.name))));
  nodes.push(heading("elements"));
  const classes = Object.entries(b.elements || {});
  if (classes.length) {
    const chips = document.createElement("div");
    chips.className = "chips";
    for (const [cls, n] of classes) {
      const c = document.createElement("span");
      c.className = "chip";
      c.textContent = `${cls} ${n}`;
      chips.append(c);
    }
    nodes.push(chips);
  } else {
    nodes.push(none("elementsNone"));
  }
  nodes.push(heading("lidar"));
  if (b.lidar) {
    nodes.push(
      table([
        row(t("lidar_points"), b.lidar.points, true),
        row(t("lidar_roof"), `${fmt(b.lidar.roof_p50) ?? "—"} / ${fmt(b.lidar.roof_p90) ?? "—"} m`, true),
        row(t("lidar_height"), withUnit(b.lidar.height, "m"), true),
      ]),
    );
  } else {
    nodes.push(none("lidarNone"));
  }
  nodes.push(...analysisSection(b.analyses));
  const actions = document.createElement("div");
  actions.className = "actions";
  const fly = document.createElement("button");
  fly.type = "button";
  fly.className = "ghost";
  fly.textContent = t("flyTo");
  fly.addEventListener("click", () => flyToBuilding(b));
  actions.append(fly);
  nodes.push(actions);
  return nodes;
}

let detailRequest = 0;
async function showBuilding(id, { fly = false } = {}) {
  const ticket = ++detailRequest;
  let b;
  try {
    b = await getJson(`/api/buildings/${id}`);
  } catch (e) {
    toast(t("loadFailed", { msg: message(e) }), true);
    return null;
  }
  if (ticket !== detailRequest) return null;
  cim.shown = { kind: "building", id: b.id, data: b };
  openDetail("building", b.name || `#${b.id}`, b.id, buildingNodes(b));
  offerReplace(b);
  if (fly) flyToBuilding(b);
  return b;
}

function elementNodes(p) {
  const link = document.createElement("span");
  if (p.building_id !== undefined && p.building_id !== null && p.building_id >= 0) {
    link.className = "link";
    link.textContent = `#${p.building_id}`;
    link.addEventListener("click", () => showBuilding(p.building_id));
  }
  const precast = p.precast ? t(`precast_${p.precast}`) : null;
  return [
    table([
      row(t("el_global_id"), p.global_id),
      row(t("el_class"), p.ifc_class),
      row(t("el_name"), p.name),
      row(t("el_storey"), p.storey),
      row(t("el_precast"), precast),
      row(t("belongsTo"), link),
    ]),
  ];
}

// A PV facet picked in the pv tileset: its figures, and a link to its building.
function showFacet(p) {
  detailRequest += 1;
  cim.shown = { kind: "pv_facet", id: p.facet_id, data: p };
  const link = document.createElement("span");
  link.className = "link";
  link.textContent = `#${p.building_id}`;
  link.addEventListener("click", () => showBuilding(p.building_id));
  openDetail("pv_facet_kind", `${t("pv_facet_kind")} ${p.facet_id}`, p.facet_id, pvFacetNodes(p, link));
}

async function showElement(properties) {
  detailRequest += 1;
  cim.shown = { kind: "element", id: properties.global_id, data: properties };
  openDetail("element", properties.name || properties.ifc_class || properties.global_id, properties.global_id, elementNodes(properties));
  // the building it belongs to, below the element
  if (properties.building_id >= 0) {
    try {
      const b = await getJson(`/api/buildings/${properties.building_id}`);
      if (cim.shown && cim.shown.id === properties.global_id) {
        const body = $("detail-body");
        const h = heading("belongsTo");
        h.textContent = `${t("belongsTo")}: ${b.name || `#${b.id}`}`;
        body.append(h, table([row(t("attr_use"), b.use), row(t("attr_height"), withUnit(b.height, "m"), true), row(t("attr_floors"), b.storeys_above, true)]));
      }
    } catch (_e) {
      // the element's building is gone (re-ingested): the element still shows
    }
  }
}

function showGisFeature(entity) {
  const rows = [];
  const props = entity.properties;
  if (props) {
    for (const name of props.propertyNames) {
      const v = props[name].getValue();
      if (v !== null && v !== undefined && v !== "" && typeof v !== "object") rows.push(row(name, v));
    }
  }
  detailRequest += 1;
  cim.shown = { kind: entity.cimRole, id: entity.id };
  openDetail(`layer_${entity.cimRole}`, (props && props.name && props.name.getValue()) || t(`layer_${entity.cimRole}`), entity.id, [table(rows)]);
}

function flyToBuilding(b) {
  const height = Number.isFinite(b.height) ? b.height : 10;
  // a ground the store does not know is the city's (the detail answers 0 for it)
  const known = Number.isFinite(b.ground_z) && b.ground_source !== "default";
  const ground = known ? b.ground_z : state.ground;
  const centre = Cesium.Cartesian3.fromDegrees(b.lon, b.lat, ground + height / 2);
  const size = Math.sqrt(b.footprint_area || 400);
  const range = Math.max(140, 5 * size + 3 * height);
  cim.flights = new Promise((resolve) => {
    viewer.camera.flyToBoundingSphere(new Cesium.BoundingSphere(centre, size), {
      offset: new Cesium.HeadingPitchRange(Cesium.Math.toRadians(20), Cesium.Math.toRadians(-30), range),
      duration: 1.5,
      complete: resolve,
      cancel: resolve,
    });
  });
  return cim.flights;
}

viewer.screenSpaceEventHandler.setInputAction((click) => {
  const picked = scene.pick(click.position);
  if (picked instanceof Cesium.Cesium3DTileFeature) {
    const name = tilesetName(picked.tileset);
    const props = {};
    for (const id of picked.getPropertyIds()) props[id] = plain(picked.getProperty(id));
    if (name === "bim" && props.global_id) {
      highlight(picked);
      showElement(props);
      return;
    }
    if (name === "pv" && props.facet_id) {
      highlight(picked);
      showFacet(props);
      return;
    }
    if (props.id !== undefined) {
      highlight(picked);
      showBuilding(props.id);
      return;
    }
  } else if (Cesium.defined(picked) && picked.id instanceof Cesium.Entity && picked.id.cimRole) {
    clearSelection();
    showGisFeature(picked.id);
    return;
  }
  closeDetail();
}, Cesium.ScreenSpaceEventType.LEFT_CLICK);
$("detail-close").addEventListener("click", closeDetail);

// -- search --------------------------------------------------------------------------------------

let searchTimer = null;
let searchTicket = 0;
async function search(text) {
  const list = $("search-results");
  const ticket = ++searchTicket;
  if (!text.trim()) {
    list.hidden = true;
    return;
  }
  let page;
  try {
    page = await getJson(`/api/buildings?limit=8&q=${encodeURIComponent(text.trim())}`);
  } catch (e) {
    page = { items: [], error: message(e) };
  }
  if (ticket !== searchTicket) return;
  const items = page.items.map((b) => {
    const li = document.createElement("li");
    li.dataset.id = String(b.id);
    const name = document.createElement("span");
    name.textContent = b.name || `#${b.id}`;
    const small = document.createElement("small");
    small.textContent = [`#${b.id}`, b.use, b.height ? `${fmt(b.height)} m` : null].filter(Boolean).join(" · ");
    li.append(name, small);
    li.addEventListener("mousedown", (e) => {
      e.preventDefault();
      pickResult(b.id);
    });
    return li;
  });
  if (!items.length) {
    const li = document.createElement("li");
    li.className = "empty";
    li.textContent = page.error ? t("searchFailed", { msg: page.error }) : t("searchNone");
    items.push(li);
  }
  list.replaceChildren(...items);
  list.hidden = false;
}

function pickResult(id) {
  $("search-results").hidden = true;
  $("search-input").blur();
  showBuilding(id, { fly: true });
}

$("search-input").addEventListener("input", (e) => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => search(e.target.value), 220);
});
$("search-input").addEventListener("keydown", (e) => {
  if (e.key === "Enter") {
    const first = $("search-results").querySelector("li[data-id]");
    if (first) pickResult(Number(first.dataset.id));
    else search(e.target.value);
  } else if (e.key === "Escape") {
    $("search-results").hidden = true;
  }
});
$("search-input").addEventListener("blur", () => setTimeout(() => ($("search-results").hidden = true), 150));

// -- sign-in -------------------------------------------------------------------------------------

function renderMe() {
  const me = state.me;
  const signedIn = Boolean(me && me.signed_in);
  $("who").hidden = !signedIn;
  $("signin").hidden = signedIn;
  $("signout").hidden = !signedIn;
  if (signedIn) $("who").textContent = t("signedInAs", { name: me.name, role: t(`role_${me.role}`) });
  $("who").dataset.role = signedIn ? me.role : "";
  const writer = signedIn && (me.role === "designer" || me.role === "operator");
  $("upload-section").hidden = !writer;
  $("jobs-section").hidden = !writer;
  if (writer) refreshJobs();
  offerReplace(cim.shown && cim.shown.kind === "building" ? cim.shown.data : null);
}

async function restoreSignIn() {
  if (!token()) return;
  try {
    state.me = await getJson("/api/me");
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) setToken("");
    state.me = null;
  }
  renderMe();
}

$("signin").addEventListener("click", () => {
  $("signin-error").hidden = true;
  $("token-input").value = "";
  $("signin-dialog").showModal();
});
$("signin-cancel").addEventListener("click", () => $("signin-dialog").close());
$("signin-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const secret = $("token-input").value.trim();
  if (!secret) return;
  try {
    const me = await getJson("/api/me", { secret });
    if (!me.signed_in) throw new Error("?");
    setToken(secret);
    state.me = me;
    $("signin-dialog").close();
    renderMe();
  } catch (err) {
    $("signin-error").textContent = t("badToken", { msg: message(err) });
    $("signin-error").hidden = false;
  }
});
$("signout").addEventListener("click", () => {
  setToken("");
  state.me = null;
  renderMe();
});

// -- jobs ------------------------------------------------------------------------------------------

async function refreshJobs() {
  if (!state.me || !state.me.signed_in) return;
  let doc;
  try {
    doc = await getJson("/api/jobs");
  } catch (_e) {
    return;
  }
  const list = $("jobs");
  const items = doc.jobs.slice(0, 12).map((j) => {
    const li = document.createElement("li");
    li.dataset.job = String(j.id);
    const head = document.createElement("div");
    head.className = "job-head";
    const name = document.createElement("span");
    name.className = "job-name";
    const file = j.args && (j.args.file || (j.args.paths && j.args.paths[0]));
    name.textContent = `#${j.id} ${j.kind}${file ? ` · ${String(file).split("/").pop()}` : ""}`;
    name.title = name.textContent;
    const status = document.createElement("span");
    status.className = `status ${j.status}`;
    status.textContent = t(`job_${j.status}`) === `job_${j.status}` ? j.status : t(`job_${j.status}`);
    head.append(name, status);
    li.append(head);
    if (j.status === "running") {
      const bar = document.createElement("progress");
      bar.max = 1;
      bar.value = j.progress || 0;
      li.append(bar);
    }
    const text = j.error || j.message;
    if (text) {
      const msg = document.createElement("div");
      msg.className = "job-msg";
      msg.textContent = text;
      msg.title = text;
      li.append(msg);
    }
    return li;
  });
  if (!items.length) {
    const li = document.createElement("li");
    li.className = "none";
    li.textContent = t("jobsEmpty");
    items.push(li);
  }
  list.replaceChildren(...items);
}
$("jobs-refresh").addEventListener("click", refreshJobs);
setInterval(() => {
  if (!document.hidden && !$("jobs-section").hidden) refreshJobs();
}, 6000);

// -- uploads -------------------------------------------------------------------------------------

function showChosen(input, labelId, key) {
  input.addEventListener("change", (e) => {
    const file = e.target.files[0];
    const label = $(labelId);
    if (file) {
      label.removeAttribute("data-i18n");
      label.textContent = file.name;
    } else {
      label.dataset.i18n = key;
      label.textContent = t(key);
    }
  });
}
showChosen($("upload-file"), "upload-name", "chooseFile");
showChosen($("upload-declaration"), "upload-declaration-name", "chooseDeclaration");

// "Replace this model": offered when the shown building comes from an uploaded IFC source the
// signed-in token may replace (the server says which: /api/sources' `replaceable`).
let replaceRequest = 0;
async function offerReplace(building) {
  const ticket = ++replaceRequest;
  const me = state.me;
  const writer = Boolean(me && me.signed_in && (me.role === "designer" || me.role === "operator"));
  const ifc = building && writer ? (building.sources || []).filter((s) => s.kind === "ifc") : [];
  let found = null;
  if (ifc.length) {
    try {
      const { sources } = await getJson("/api/sources");
      const mine = new Set(sources.filter((s) => s.replaceable).map((s) => s.id));
      found = ifc.find((s) => mine.has(s.id)) || null;
    } catch (_e) {
      found = null;
    }
  }
  if (ticket !== replaceRequest) return;
  const changed = !found || !state.replaceable || state.replaceable.id !== found.id;
  state.replaceable = found ? { id: found.id, name: found.name } : null;
  $("upload-replace-row").hidden = !found;
  $("upload-replace-name").textContent = found ? found.name : "";
  if (changed) $("upload-replace").checked = false;
}

function uploadMessage(text, isError = false) {
  $("upload-status").hidden = false;
  $("upload-message").textContent = text;
  $("upload-message").classList.toggle("error", isError);
}

async function newBuildingOf(sourceId) {
  // the buildings of a source are the newest rows: look at the last page first
  const head = await getJson("/api/buildings?limit=1");
  const pages = [Math.max(0, head.total - 200)];
  for (let o = 0; o < head.total; o += 1000) pages.push(o);
  for (const offset of pages) {
    const page = await getJson(`/api/buildings?limit=${offset === pages[0] ? 200 : 1000}&offset=${offset}`);
    const found = page.items.filter((b) => b.source_id === sourceId);
    if (found.length) return found[found.length - 1].id;
  }
  return null;
}

$("upload-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const file = $("upload-file").files[0];
  if (!file) {
    uploadMessage(t("noFile"), true);
    return;
  }
  const button = $("upload-button");
  button.disabled = true;
  const bar = $("upload-progress");
  bar.value = 0;
  const replaces = $("upload-replace").checked && state.replaceable ? state.replaceable.id : null;
  cim.upload = { status: "uploading" };
  try {
    uploadMessage(t("uploading", { pct: 0 }));
    const accepted = await uploadFile(
      file,
      (f) => {
        bar.value = f;
        uploadMessage(t("uploading", { pct: Math.round(f * 100) }));
      },
      { replaces, declaration: $("upload-declaration").files[0] || null },
    );
    cim.upload = { status: "queued", job: accepted.job_id, replaces: accepted.replaces };
    bar.value = 0;
    uploadMessage(t("queued"));
    refreshJobs();
    const job = await followJob(accepted.job_id, (j) => {
      if (j.status === "running") {
        bar.value = j.progress || 0;
        uploadMessage(t("processing", { pct: Math.round((j.progress || 0) * 100), msg: j.message || "" }));
      }
    });
    refreshJobs();
    if (job.status !== "done") throw new Error(job.error || job.status);
    const report = (job.result && job.result.ingest) || {};
    if (report.status === "needs_placement") {
      cim.upload = { status: "needs_placement", job: job.id };
      uploadMessage(t("needsPlacement"), true);
      return;
    }
    bar.value = 1;
    const added = await loadTilesets();
    const buildingId = report.source_id ? await newBuildingOf(report.source_id) : null;
    const replaced = (job.result && job.result.replaced) || null;
    cim.upload = { status: "done", job: job.id, building: buildingId, replaced };
    uploadMessage(replaced ? t("uploadReplaced", { name: replaced.name }) : t("uploadDone"));
    if (buildingId !== null) {
      const b = await showBuilding(buildingId);
      if (b) await flyToBuilding(b);
    }
    await Promise.all(added.filter((a) => a.tileset.show).map((a) => a.initial));
    cim.upload.shown = true;
  } catch (err) {
    cim.upload = { status: "failed", error: message(err) };
    uploadMessage(t("uploadFailed", { msg: message(err) }), true);
  } finally {
    button.disabled = false;
  }
});

// -- language ------------------------------------------------------------------------------------

$("lang").addEventListener("click", () => setLang(currentLang() === "zh" ? "en" : "zh"));
onLangChange(() => {
  renderLayers();
  renderColourOptions();
  applyStyle();
  renderMe();
  if (!$("hint").hidden) $("hint").textContent = t("emptyHint");
  const shown = cim.shown;
  if (shown && shown.kind === "building") showBuilding(shown.id);
  else if (shown && shown.kind === "element") showElement(shown.data);
  else if (shown && shown.kind === "pv_facet") showFacet(shown.data);
  renderPvLegend();
});

// -- start -------------------------------------------------------------------------------------

async function main() {
  applyLabels();
  renderLayers();
  renderColourOptions();
  $("colour").addEventListener("change", (e) => setColour(e.target.value));
  restoreSignIn();
  const [added] = await Promise.all([loadTilesets(), ogcCollections(), findGround()]);
  renderLayers();
  const hooks = { tileset: () => state.tilesets.buildings, render: () => scene.requestRender() };
  initIndicators($("indicators-section"), { ...hooks, restore: applyStyle }).catch((e) => errors.push(message(e)));
  if (!added.length) {
    $("hint").textContent = t("emptyHint");
    $("hint").hidden = false;
    const { lon, lat } = state.origin;
    viewer.camera.setView({ destination: Cesium.Cartesian3.fromDegrees(lon, lat, 6.5e6) });
  } else {
    flyHome(0);
  }
  const gis = GIS_LAYERS.filter((r) => r in state.available).map((r) => showGisLayer(r, true));
  await Promise.all([...added.filter((a) => a.tileset.show).map((a) => a.initial), ...gis]);
  await nextFrame();
  return { tilesets: Object.keys(state.tilesets), layers: Object.keys(state.available) };
}

cim.ready = main();
cim.ready.catch((e) => {
  errors.push(message(e));
  toast(t("loadFailed", { msg: message(e) }), true);
});
