// The test harness page's script: a CesiumJS Viewer with nothing that calls ion or the internet,
// the tilesets of the query string (?tileset=URL, repeatable), and window.cimHarness for tests:
//
//   cimHarness.ready        Promise: resolves {tilesets: [{url, index}]} once every tileset has
//                           raised initialTilesLoaded (camera already on them); rejects on the
//                           first tileFailed, a tileset that cannot load, or a Viewer that
//                           cannot be built (no WebGL)
//   cimHarness.errors       [{kind: "tileFailed"|"tilesetLoad"|"pageerror"|"unhandledrejection"|
//                           "renderError"|"viewer", message, url?}]
//   cimHarness.pick(x, y)   the feature at canvas CSS pixel x, y: {tileset, tilesetIndex,
//                           featureId, className, properties: {id: value}} or null for nothing
//   cimHarness.pickCenter() the same at the canvas centre
//   cimHarness.settle()     Promise: resolves once every tileset has all its tiles for the view
//                           and two more frames are drawn (for screenshots)
//   cimHarness.setTilesetsVisible(bool)  show or hide every tileset (then settle())
//   cimHarness.screenPosition(i)  canvas CSS pixel {x, y} of tileset i's bounding sphere
//                           centre (null when behind the camera), to pick a given tileset
//   cimHarness.timings      ms since navigation: script, viewer, tilesetsJson, initialTilesLoaded
//   cimHarness.viewer, cimHarness.tilesets  the Cesium objects themselves
//
// Query string: tileset=URL (repeatable), cesium=BASE (the Cesium build, read by index.html),
// time=ISO-8601 (the scene's clock, pinned; default 2025-06-21T04:00:00Z, noon in Tongliao),
// sse=N (maximumScreenSpaceError, default 16), sky=1 (sky box, atmosphere, sun and fog: off by
// default, since SwiftShader draws them on the CPU at several times the cost of the tiles),
// continuous=1 (draw every frame instead of only on change).
/* global Cesium */
"use strict";

(function () {
  const params = new URLSearchParams(window.location.search);
  const sky = params.get("sky") === "1";
  const errors = [];
  let rejectReady;
  let resolveReady;
  const ready = new Promise((resolve, reject) => {
    resolveReady = resolve;
    rejectReady = reject;
  });
  // nobody may be awaiting yet: keep an early rejection from counting as unhandled
  ready.catch(() => {});

  function fail(kind, message, url) {
    const entry = { kind, message: String(message) };
    if (url !== undefined) entry.url = String(url);
    errors.push(entry);
    if (kind !== "pageerror" && kind !== "unhandledrejection") {
      rejectReady(new Error(`${kind}: ${entry.message}${url ? ` (${url})` : ""}`));
    }
  }

  window.addEventListener("error", (e) => {
    fail("pageerror", e.error && e.error.stack ? e.error.stack : e.message);
  });
  window.addEventListener("unhandledrejection", (e) => {
    const r = e.reason;
    fail("unhandledrejection", r && r.stack ? r.stack : r);
  });

  // milliseconds since navigation at each step, for tests that want to know where time went
  const timings = { script: performance.now() };
  const harness = {
    ready,
    errors,
    timings,
    tilesets: [],
    viewer: null,
    pick,
    pickCenter,
    settle,
    setTilesetsVisible,
    screenPosition,
  };
  window.cimHarness = harness;

  // Values of a property table as JSON: BigInt, typed arrays and Cesium vectors made plain.
  function plain(v) {
    if (typeof v === "bigint") {
      return Number.isSafeInteger(Number(v)) ? Number(v) : v.toString();
    }
    if (v === null || v === undefined) return null;
    if (ArrayBuffer.isView(v)) return Array.from(v, plain);
    if (Array.isArray(v)) return v.map(plain);
    if (typeof v === "object") {
      if (typeof v.constructor.pack === "function" && "x" in v) {
        return Array.from(v.constructor.pack(v, []));
      }
      const out = {};
      for (const k of Object.keys(v)) out[k] = plain(v[k]);
      return out;
    }
    if (typeof v === "number" && !Number.isFinite(v)) return String(v);
    return v;
  }

  // The metadata class of a feature: EXT_structural_metadata's class id (read through the
  // feature table's property table, which Cesium does not expose publicly), else the legacy
  // batch table hierarchy's class, else null.
  function className(feature) {
    try {
      const table = feature.content.batchTable;
      const cls = table && table._propertyTable && table._propertyTable.class;
      if (cls && cls.id) return cls.id;
      return feature.getExactClassName() ?? null;
    } catch (_e) {
      return null;
    }
  }

  function pick(x, y) {
    const viewer = harness.viewer;
    if (!viewer) return null;
    // no render first: the pick pass draws what it needs, and a SwiftShader frame costs ~0.2 s
    const picked = viewer.scene.pick(new Cesium.Cartesian2(x, y));
    if (!Cesium.defined(picked)) return null;
    const tileset =
      picked instanceof Cesium.Cesium3DTileFeature
        ? picked.tileset
        : picked.primitive instanceof Cesium.Cesium3DTileset
          ? picked.primitive
          : undefined;
    const index = tileset ? harness.tilesets.indexOf(tileset) : -1;
    const result = {
      tileset: index >= 0 ? harness.tilesets[index]._cimUrl : null,
      tilesetIndex: index,
      featureId: null,
      className: null,
      properties: {},
    };
    if (picked instanceof Cesium.Cesium3DTileFeature) {
      result.featureId = picked.featureId;
      result.className = className(picked);
      for (const id of picked.getPropertyIds()) {
        result.properties[id] = plain(picked.getProperty(id));
      }
    }
    return result;
  }

  function pickCenter() {
    const canvas = harness.viewer ? harness.viewer.scene.canvas : null;
    if (!canvas) return null;
    return pick(canvas.clientWidth / 2, canvas.clientHeight / 2);
  }

  function nextFrame() {
    return new Promise((resolve) => {
      const remove = harness.viewer.scene.postRender.addEventListener(() => {
        remove();
        resolve();
      });
      harness.viewer.scene.requestRender();
    });
  }

  async function settle(timeoutMs = 60000) {
    const start = performance.now();
    for (;;) {
      await nextFrame();
      if (harness.tilesets.every((t) => !t.show || t.tilesLoaded)) break;
      if (performance.now() - start > timeoutMs) {
        throw new Error(`tiles still loading after ${timeoutMs} ms`);
      }
    }
    await nextFrame();
    await nextFrame();
  }

  function setTilesetsVisible(visible) {
    for (const t of harness.tilesets) t.show = Boolean(visible);
  }

  function screenPosition(index) {
    const tileset = harness.tilesets[index];
    if (!tileset) return null;
    const p = Cesium.SceneTransforms.worldToWindowCoordinates(
      harness.viewer.scene,
      tileset.boundingSphere.center,
    );
    return p ? { x: p.x, y: p.y } : null;
  }

  function zoomTo(tilesets) {
    const spheres = tilesets.map((t) => t.boundingSphere);
    const sphere = Cesium.BoundingSphere.fromBoundingSpheres(spheres);
    const range = Math.max(sphere.radius * 3.0, 50.0);
    const camera = harness.viewer.camera;
    camera.viewBoundingSphere(
      sphere,
      new Cesium.HeadingPitchRange(Cesium.Math.toRadians(30), Cesium.Math.toRadians(-35), range),
    );
    camera.lookAtTransform(Cesium.Matrix4.IDENTITY);
  }

  async function main() {
    const urls = params.getAll("tileset");
    if (urls.length === 0) throw new Error("no ?tileset=URL given");
    let viewer;
    try {
      viewer = new Cesium.Viewer("cesium", {
        // everything that would call Cesium ion or another online service is off
        baseLayer: false,
        baseLayerPicker: false,
        geocoder: false,
        // no terrain option: the default is the plain ellipsoid, no request at all
        // widgets the tests do not need (and that would change screenshots)
        animation: false,
        timeline: false,
        homeButton: false,
        sceneModePicker: false,
        navigationHelpButton: false,
        fullscreenButton: false,
        infoBox: false,
        selectionIndicator: false,
        shouldAnimate: false,
        // draw only when something changed (a tile arrived, the camera moved, settle() asked):
        // SwiftShader renders on the CPU, and an idle page must leave it to the tests
        requestRenderMode: params.get("continuous") !== "1",
        maximumRenderTimeChange: Infinity,
      });
    } catch (e) {
      fail("viewer", e && e.stack ? e.stack : e);
      return;
    }
    harness.viewer = viewer;
    timings.viewer = performance.now();
    viewer.scene.renderError.addEventListener((_scene, e) => {
      fail("renderError", e && e.stack ? e.stack : e);
    });
    const scene = viewer.scene;
    scene.globe.baseColor = Cesium.Color.fromCssColorString("#2b3a4a");
    scene.globe.depthTestAgainstTerrain = false;
    if (!sky) {
      scene.skyBox.show = false;
      scene.skyAtmosphere.show = false;
      scene.sun.show = false;
      scene.moon.show = false;
      scene.fog.enabled = false;
      scene.globe.showGroundAtmosphere = false;
      scene.backgroundColor = Cesium.Color.fromCssColorString("#101418");
    }
    // a pinned clock: the sun (and so the shading) is the same on every run
    const time = Cesium.JulianDate.fromIso8601(params.get("time") || "2025-06-21T04:00:00Z");
    viewer.clock.currentTime = time;
    viewer.clock.startTime = time;
    viewer.clock.stopTime = time;
    viewer.clock.shouldAnimate = false;
    viewer.clock.multiplier = 0;

    const sse = Number(params.get("sse") || 16);
    const loaded = urls.map(async (url, index) => {
      let tileset;
      try {
        tileset = await Cesium.Cesium3DTileset.fromUrl(url, {
          maximumScreenSpaceError: sse,
          // the atmosphere's reflections on models: rendered per model on the CPU by
          // SwiftShader, it makes loading several times slower; on only with sky=1
          environmentMapOptions: { enabled: sky },
          // without sky, no image-based lighting at all: a smaller model shader, which
          // SwiftShader links in a fraction of the time
          ...(sky
            ? {}
            : {
                imageBasedLighting: new Cesium.ImageBasedLighting({
                  imageBasedLightingFactor: Cesium.Cartesian2.ZERO,
                }),
              }),
        });
      } catch (e) {
        fail("tilesetLoad", e && e.message ? e.message : e, url);
        throw e;
      }
      tileset._cimUrl = url;
      harness.tilesets[index] = tileset;
      const initial = new Promise((resolve) => {
        tileset.initialTilesLoaded.addEventListener(() => resolve());
      });
      tileset.tileFailed.addEventListener((e) => fail("tileFailed", e.message, e.url));
      viewer.scene.primitives.add(tileset);
      return { tileset, initial, url, index };
    });
    const sets = await Promise.all(loaded);
    timings.tilesetsJson = performance.now();
    zoomTo(sets.map((s) => s.tileset));
    await Promise.all(sets.map((s) => s.initial));
    timings.initialTilesLoaded = performance.now();
    resolveReady({ tilesets: sets.map((s) => ({ url: s.url, index: s.index })) });
  }

  main().catch((e) => {
    if (!errors.some((x) => x.kind !== "pageerror")) fail("viewer", e && e.stack ? e.stack : e);
    rejectReady(e);
  });
})();
