// Colouring the city by an attribute: a Cesium3DTileStyle of conditions over the buildings
// tileset's feature properties (tiles/encode.py BUILDING_PROPERTIES), and its legend.
// Numbers that are unknown carry the property's no-data value (-1), read by Cesium as undefined.

import { t } from "./i18n.js";

const Cesium = window.Cesium;
const UNKNOWN = "#9aa3ad";
// sequential, light to dark (ColorBrewer YlOrRd-ish, readable on the grey globe)
const RAMP = ["#fee391", "#fec44f", "#fb9a29", "#e3591c", "#b5301b", "#7a1a12"];
// categorical (ColorBrewer Set2 + Dark2)
const CATEGORIES = [
  "#66c2a5", "#fc8d62", "#8da0cb", "#e78ac3", "#a6d854", "#ffd92f",
  "#e5c494", "#1b9e77", "#d95f02", "#7570b3",
];

// numeric attributes: the bucket edges and how a bucket is labelled
const NUMERIC = {
  height: { prop: "height", edges: [10, 20, 35, 60, 100], unit: (v) => t("metres", { v }) },
  floors: { prop: "floors", edges: [4, 7, 12, 19, 33], unit: (v) => t("floorsN", { v }) },
  year: { prop: "year", edges: [1980, 1990, 2000, 2010, 2020], unit: (v) => String(v) },
  // the assembly rate (GB/T 51129-2017): 50 % makes a prefabricated building, 60 / 76 / 91 %
  // the grades A / AA / AAA
  prefab: { prop: "prefab_rate", edges: [20, 35, 50, 60, 76], unit: (v) => `${v} %` },
  // rooftop PV: kWh a year per m2 of roof (cim/analyze/pv.py); an unshaded flat roof at
  // Tongliao gives about 200, a shaded one or a small one with its setback less
  pv: { prop: "pv_kwh_per_m2", edges: [50, 100, 150, 180, 210], unit: (v) => `${v} kWh/m²` },
};

// the energy-code checks (GB 55015-2021, cim/analyze/energy.py): a building's worst check
const ENERGY = [
  ["pass", "#1a9850"],
  ["advisory", "#fdae61"],
  ["fail", "#d73027"],
  ["unknown", UNKNOWN],
];

// the rooftop PV facets tileset (tiles/pv.py bakes these colours in: YIELD_EDGES, YIELD_RAMP,
// UNUSABLE; a test keeps both sides equal): specific yield, kWh/kWp a year, of a facet's usable
// part; grey for what is not usable (left out by a rule, the edge setback, obstacles)
export const PV_FACETS = { edges: [800, 950, 1050, 1150, 1300], unit: "kWh/kWp" };

export function pvFacetLegend() {
  const { edges, unit } = PV_FACETS;
  const legend = edges.map((edge, i) => ({
    colour: RAMP[i],
    label: i === 0 ? `< ${edge} ${unit}` : `${edges[i - 1]} – ${edge} ${unit}`,
  }));
  legend.push({ colour: RAMP[edges.length], label: `≥ ${edges[edges.length - 1]} ${unit}` });
  legend.push({ colour: UNKNOWN, label: t("pv_unusable") });
  return legend;
}

export const ATTRIBUTES = ["none", "height", "floors", "use", "year", "prefab", "energy", "pv"];

function quote(text) {
  return `'${String(text).replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;
}

function numericScheme(key) {
  const { prop, edges, unit } = NUMERIC[key];
  const v = "${" + prop + "}";
  const missing = `${v} === undefined || ${v} === null || ${v} < 0`;
  const conditions = [[missing, `color('${UNKNOWN}')`]];
  const legend = [];
  edges.forEach((edge, i) => {
    conditions.push([`${v} < ${edge}`, `color('${RAMP[i]}')`]);
    const low = i === 0 ? null : edges[i - 1];
    legend.push({
      colour: RAMP[i],
      label: low === null ? `< ${unit(edge)}` : `${unit(low)} – ${unit(edge)}`,
    });
  });
  conditions.push(["true", `color('${RAMP[edges.length]}')`]);
  legend.push({ colour: RAMP[edges.length], label: `≥ ${unit(edges[edges.length - 1])}` });
  legend.push({ colour: UNKNOWN, label: t("unknown") });
  return { conditions, legend };
}

function energyScheme() {
  const v = "${energy_status}";
  const conditions = ENERGY.map(([status, colour]) => [`${v} === '${status}'`, `color('${colour}')`]);
  conditions.push(["true", "color('#d9d4c7')"]);
  const legend = ENERGY.map(([status, colour]) => ({ colour, label: t(`energy_${status}`) }));
  legend.push({ colour: "#d9d4c7", label: t("notComputed") });
  return { conditions, legend };
}

function useScheme(uses) {
  const v = "${use}";
  const conditions = [[`${v} === undefined || ${v} === null || ${v} === ''`, `color('${UNKNOWN}')`]];
  const legend = [];
  uses.slice(0, CATEGORIES.length).forEach((use, i) => {
    conditions.push([`${v} === ${quote(use)}`, `color('${CATEGORIES[i]}')`]);
    legend.push({ colour: CATEGORIES[i], label: use });
  });
  conditions.push(["true", "color('#d9d4c7')"]);
  if (uses.length > CATEGORIES.length) legend.push({ colour: "#d9d4c7", label: t("other") });
  legend.push({ colour: UNKNOWN, label: t("unknown") });
  return { conditions, legend };
}

// The style for `key` ("none" or an attribute); `hideBim` hides the buildings drawn from a BIM
// model while the BIM tileset shows them element by element. `uses`: the use values, commonest
// first. Returns {style, legend}.
export function styleFor(key, { hideBim = false, uses = [] } = {}) {
  const show = hideBim ? "${lod} !== 'BIM'" : "true";
  if (key === "none" || !key) {
    return { style: hideBim ? new Cesium.Cesium3DTileStyle({ show }) : undefined, legend: [] };
  }
  const scheme =
    key === "use" ? useScheme(uses) : key === "energy" ? energyScheme() : numericScheme(key);
  const style = new Cesium.Cesium3DTileStyle({
    show,
    color: { conditions: scheme.conditions },
  });
  return { style, legend: scheme.legend };
}

export function renderLegend(element, legend) {
  element.replaceChildren(
    ...legend.map(({ colour, label }) => {
      const row = document.createElement("li");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = colour;
      const text = document.createElement("span");
      text.textContent = label;
      row.append(swatch, text);
      return row;
    }),
  );
  element.hidden = legend.length === 0;
}
