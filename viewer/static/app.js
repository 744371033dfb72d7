// The one map: every tileset the server lists, picking with a side panel.
const Cesium = window.Cesium;

const viewer = new Cesium.Viewer("map", {
  baseLayer: false, baseLayerPicker: false, geocoder: false, timeline: false, animation: false,
  homeButton: true, sceneModePicker: false, navigationHelpButton: false, fullscreenButton: false,
  infoBox: false, selectionIndicator: false,
});
viewer.scene.globe.baseColor = Cesium.Color.fromCssColorString("#d9dde3");
window.cim = { tilesets: {}, ready: null, errors: [] };

async function load() {
  const info = await (await fetch("/api/tilesets")).json();
  const { lon, lat } = info.origin;
  const loaded = [];
  for (const t of info.tilesets) {
    const tileset = await Cesium.Cesium3DTileset.fromUrl(t.url, { maximumScreenSpaceError: 8 });
    tileset.tileFailed.addEventListener((e) => window.cim.errors.push(`${t.name}: ${e.message}`));
    viewer.scene.primitives.add(tileset);
    window.cim.tilesets[t.name] = tileset;
    loaded.push(new Promise((resolve) => tileset.initialTilesLoaded.addEventListener(resolve)));
  }
  if (info.tilesets.length) {
    const first = window.cim.tilesets.buildings || Object.values(window.cim.tilesets)[0];
    await viewer.zoomTo(first);
  } else {
    viewer.camera.setView({ destination: Cesium.Cartesian3.fromDegrees(lon, lat, 3000) });
    const hint = document.getElementById("hint");
    hint.textContent = "此库尚无瓦片：请先运行 cim ingest 和 cim tile";
    hint.hidden = false;
  }
  await Promise.all(loaded);
}

function show(feature) {
  const panel = document.getElementById("panel");
  const rows = feature.getPropertyIds().map((k) => [k, feature.getProperty(k)]);
  document.getElementById("title").textContent = feature.getProperty("name") || `#${feature.getProperty("id") ?? ""}`;
  document.getElementById("props").replaceChildren(...rows.map(([k, v]) => {
    const tr = document.createElement("tr");
    for (const text of [k, v === undefined ? "—" : String(v)]) {
      const td = document.createElement("td"); td.textContent = text; tr.append(td);
    }
    return tr;
  }));
  panel.hidden = false;
  window.cim.picked = Object.fromEntries(rows);
}

viewer.screenSpaceEventHandler.setInputAction((click) => {
  const picked = viewer.scene.pick(click.position);
  if (picked instanceof Cesium.Cesium3DTileFeature) show(picked);
  else document.getElementById("panel").hidden = true;
}, Cesium.ScreenSpaceEventType.LEFT_CLICK);
document.getElementById("close").onclick = () => { document.getElementById("panel").hidden = true; };

window.cim.ready = load().catch((e) => { window.cim.errors.push(String(e)); throw e; });
