// The city health check (城市体检) dashboard: the indicators `cim analyze indicators` stored
// (GET /api/indicators, schemas/indicators.schema.json), each with its value, target and status;
// clicking one colours the buildings of its map layer (e.g. homes outside the life circle) in
// the buildings tileset by their `id` property, the others light grey. Clicking it again (or
// choosing a colouring in the colour list) gives the map back.

import { ApiError, getJson } from "./api.js";
import { currentLang, onLangChange } from "./i18n.js";

const Cesium = window.Cesium;
const STATUS = {
  met: { colour: "#1a9850", zh: "达标", en: "met" },
  not_met: { colour: "#d73027", zh: "未达标", en: "not met" },
  no_data: { colour: "#9aa3ad", zh: "无数据", en: "no data" },
};
const HIT = "#d73027";
const REST = "#e4e0d6";
const TEXT = {
  zh: {
    title: "城市体检指标",
    none: "尚无指标：运行 `cim analyze indicators`",
    stale: "数据已更新，指标待重新计算",
    layer: "地图上标红：",
    target: "目标",
  },
  en: {
    title: "City health check",
    none: "No indicators yet: run `cim analyze indicators`",
    stale: "the data changed since: recompute the indicators",
    layer: "In red on the map: ",
    target: "target",
  },
};

function say(key) {
  return TEXT[currentLang()][key] ?? TEXT.zh[key];
}

function fmt(value, unit) {
  if (value === null || value === undefined) return "–";
  if (unit === "share") return `${(100 * value).toFixed(1)}%`;
  if (unit === "m2") return `${Math.round(value).toLocaleString()} m²`;
  if (unit === "buildings") return String(Math.round(value));
  return `${value.toFixed(2)} ${unit}`;
}

// The style that shows the ids of `layers` in red: a colour expression of our own (Cesium
// takes any object with evaluateColor), since a condition per id would be thousands long.
function layerStyle(layers) {
  const ids = new Set(layers.flatMap((l) => l.building_ids));
  const hit = Cesium.Color.fromCssColorString(HIT);
  const rest = Cesium.Color.fromCssColorString(REST);
  const style = new Cesium.Cesium3DTileStyle();
  style.color = {
    evaluateColor(feature, result) {
      return Cesium.Color.clone(ids.has(feature.getProperty("id")) ? hit : rest, result);
    },
  };
  return style;
}

// hooks: {tileset(): the buildings Cesium3DTileset or undefined, render(): request a frame,
// restore(): give the map its chosen colouring back}
export async function initIndicators(section, hooks) {
  const view = { areas: [], area: 0, picked: null };
  try {
    // asked first: GET /api/indicators answers 404 until `cim analyze indicators` ran
    const { analyses } = await getJson("/api/analyses");
    view.areas = analyses.indicators ? (await getJson("/api/indicators")).areas : [];
  } catch (e) {
    if (e instanceof ApiError && (e.status === 401 || e.status === 403)) return view;
    throw e;
  }

  function pick(indicator) {
    const tileset = hooks.tileset();
    if (!tileset) return;
    if (view.picked === indicator.id || !indicator.map.layers.length) {
      view.picked = null;
      hooks.restore();
    } else {
      view.picked = indicator.id;
      tileset.style = layerStyle(indicator.map.layers);
      hooks.render();
    }
    render();
  }

  function row(indicator) {
    const li = document.createElement("li");
    li.className = "indicator";
    li.dataset.id = indicator.id;
    li.tabIndex = 0;
    const status = STATUS[indicator.status] || STATUS.no_data;
    const dot = document.createElement("span");
    dot.className = "swatch";
    dot.style.background = status.colour;
    dot.title = status[currentLang()];
    const name = document.createElement("span");
    name.textContent = currentLang() === "zh" ? indicator.name_zh : indicator.name_en;
    const value = document.createElement("small");
    const t = indicator.target;
    value.textContent =
      `${fmt(indicator.value, indicator.unit)} · ${say("target")} ${t.comparison} ` +
      `${fmt(t.value, indicator.unit)} · ${status[currentLang()]}`;
    li.append(dot, name, document.createElement("br"), value);
    if (view.picked === indicator.id) {
      li.classList.add("picked");
      const layers = document.createElement("small");
      layers.textContent =
        say("layer") + indicator.map.layers
          .map((l) => `${currentLang() === "zh" ? l.label_zh : l.label} (${l.building_ids.length})`).join("; ");
      li.append(document.createElement("br"), layers);
    }
    li.addEventListener("click", () => pick(indicator));
    li.addEventListener("keydown", (e) => {
      if (e.key === "Enter") pick(indicator);
    });
    return li;
  }

  function render() {
    const h2 = document.createElement("h2");
    h2.textContent = say("title");
    const parts = [h2];
    if (!view.areas.length) {
      const p = document.createElement("p");
      p.className = "help";
      p.textContent = say("none");
      parts.push(p);
    } else {
      if (view.areas.length > 1) {
        const select = document.createElement("select");
        view.areas.forEach((a, i) => {
          const o = document.createElement("option");
          o.value = String(i);
          o.textContent = a.boundary.name;
          select.append(o);
        });
        select.value = String(view.area);
        select.addEventListener("change", (e) => {
          view.area = Number(e.target.value);
          render();
        });
        parts.push(select);
      }
      const area = view.areas[view.area];
      if (area.stale) {
        const p = document.createElement("p");
        p.className = "help";
        p.textContent = say("stale");
        parts.push(p);
      }
      const list = document.createElement("ul");
      list.id = "indicators";
      list.append(...area.indicators.map(row));
      parts.push(list);
    }
    section.replaceChildren(...parts);
    section.hidden = false;
  }

  onLangChange(render);
  // a colouring chosen in the list replaces the indicator's
  document.getElementById("colour")?.addEventListener("change", () => {
    view.picked = null;
    render();
  });
  render();
  return view;
}
