// The analyzers' sections of the detail panel: the energy-code checks, the rooftop PV report and
// one PV facet picked in the pv tileset. Every check, orientation, status and reason shows in the
// page's language (labels: i18n.js CHECKS, SIDES, WEATHER; the PV rules file's why_zh), the
// other language in a tooltip; the analyzers' keys stay in data-* attributes for tests.

import { CHECKS, SIDES, WEATHER, currentLang, labelOf, t } from "./i18n.js";
import { fmt, row, table, withUnit } from "./panel.js";

// a PV rule's reason in the page's language, the other in `other`
function reason(why, whyZh) {
  const zh = whyZh || why || "";
  return currentLang() === "zh" ? { text: zh, other: why || "" } : { text: why || zh, other: zh };
}

// The rooftop PV report (cim/analyze/pv.py, schemas/pv.schema.json): the totals, the shading
// loss, each facet (used or left out, and why), the weather it was computed with.
export function pvNodes(r) {
  const h = document.createElement("h3");
  h.textContent = t("pv_title");
  const lines = [
    t("pv_summary", {
      kwp: fmt(r.kwp, 1),
      kwh: fmt(r.kwh_per_year, 0),
      spec: r.kwh_per_kwp === null ? "—" : fmt(r.kwh_per_kwp, 0),
    }),
    `${t("pv_area", { roof: fmt(r.roof_area_m2, 1), usable: fmt(r.usable_area_m2, 1) })} · ${
      r.pv_ready ? t("pv_ready") : t("pv_not_ready")
    }`,
  ];
  if (r.shading_loss !== null) lines.push(t("pv_shading", { v: fmt(100 * r.shading_loss, 1) }));
  const summary = document.createElement("div");
  summary.className = "pv-summary";
  for (const text of lines) {
    const p = document.createElement("p");
    p.textContent = text;
    summary.append(p);
  }
  const list = document.createElement("ul");
  list.className = "pv-facets";
  for (const f of r.facets) {
    const li = document.createElement("li");
    li.dataset.usable = String(f.usable);
    li.dataset.facet = `${r.building_id}.${f.facet}`;
    const base = { tilt: fmt(f.tilt_deg, 0), az: fmt(f.azimuth_deg, 0) };
    if (f.usable) {
      li.textContent = t("pv_facet", { ...base, usable: fmt(f.usable_area_m2, 1), spec: fmt(f.kwh_per_kwp, 0) });
    } else {
      const why = reason(f.excluded_by.why, f.excluded_by.why_zh);
      li.dataset.rule = f.excluded_by.rule;
      li.textContent = t("pv_excluded", { ...base, area: fmt(f.area_m2, 1), why: why.text });
      li.title = why.other;
    }
    list.append(li);
  }
  const weather = document.createElement("p");
  weather.className = "pv-weather";
  const sky = labelOf(WEATHER, r.weather.kind);
  weather.textContent = t("pv_weather", { kind: sky.text });
  weather.title = sky.other;
  return [h, summary, list, weather];
}

// One facet of the pv tileset (tiles/pv.py FACET_PROPERTIES), as picked.
export function pvFacetNodes(p, buildingLink) {
  const status = p.usable
    ? { text: t("pv_f_used"), other: "" }
    : (() => {
        const why = reason(p.why, p.why_zh);
        return { text: t("pv_f_excluded", { why: why.text }), other: why.other };
      })();
  const statusRow = row(t("pv_f_status"), status.text);
  statusRow.dataset.status = p.usable ? "usable" : p.excluded_by || "excluded";
  if (status.other) statusRow.title = status.other;
  const pct = p.shading_loss === null || p.shading_loss === undefined ? null : `${fmt(100 * p.shading_loss, 1)} %`;
  const rows = [
    row(t("pv_facet_id"), p.facet_id),
    row(t("belongsTo"), buildingLink),
    row(t("pv_f_source"), t(`pv_src_${p.source}`)),
    row(t("pv_f_tilt"), withUnit(p.tilt, "°", 1), true),
    row(t("pv_f_azimuth"), withUnit(p.azimuth, "°", 1), true),
    row(t("pv_f_area"), withUnit(p.area_m2, "m²", 1), true),
    row(t("pv_f_usable"), withUnit(p.usable_area_m2, "m²", 1), true),
    row(t("pv_f_kwp"), withUnit(p.kwp, "kWp", 2), true),
    row(t("pv_f_kwh"), withUnit(p.kwh_per_year, "kWh", 0), true),
    row(t("pv_f_kwh_m2"), withUnit(p.kwh_per_m2, "kWh/m²", 1), true),
    row(t("pv_f_spec"), withUnit(p.kwh_per_kwp, "kWh/kWp", 0), true),
    row(t("pv_f_loss"), pct, true),
    statusRow,
  ];
  const keys = ["facet_id", "building", "source", "tilt", "azimuth", "area_m2", "usable_area_m2", "kwp", "kwh_per_year", "kwh_per_m2", "kwh_per_kwp", "shading_loss"];
  keys.forEach((k, i) => (rows[i].dataset.field = k));
  return [table(rows)];
}

// The energy-code checks (cim/analyze/energy.py, schemas/energy.schema.json): the status, the
// climate zone, the shape coefficient, the WWR per orientation and each check with its limit.
export function energyNodes(r) {
  const nodes = [];
  const h = document.createElement("h4");
  h.textContent = t("energy_title");
  nodes.push(h);
  const verdict = document.createElement("p");
  verdict.className = "energy-verdict";
  verdict.dataset.status = r.status;
  verdict.textContent = `${t(`energy_${r.status}`)}${r.scope === "screening" ? ` ${t("energy_screening")}` : ""}`;
  nodes.push(verdict);
  const c = r.climate || {};
  const zh = currentLang() === "zh";
  const city = c.nearest_city ? (zh ? c.nearest_city.city : c.nearest_city.city_en || c.nearest_city.city) : "";
  const zone = row(t("energy_zone"), c.zone ? `${zh ? c.zone_zh || c.zone : c.zone} (${city})` : "—");
  if (!c.zone && c.why) zone.title = c.why;
  const rows = [zone, row(t("energy_shape"), r.shape && r.shape.value !== null ? fmt(r.shape.value, 3) : "—")];
  for (const [side, f] of Object.entries(r.facades || {})) {
    if (f.wwr === null) continue;
    const s = labelOf(SIDES, side);
    const tr = row(
      { text: `${t("energy_wwr")} · ${s.text}`, other: s.other },
      `${fmt(f.wwr, 3)} (${fmt(f.window_area_m2, 1)} / ${fmt(f.facade_area_m2, 1)} m²)`,
    );
    tr.dataset.side = side;
    rows.push(tr);
  }
  nodes.push(table(rows));
  const checks = (r.checks || []).map((ch) => {
    const value = `${ch.value === null ? "—" : fmt(ch.value, 3)} / ${ch.limit === null ? "—" : fmt(ch.limit, 2)}`;
    const tr = row(labelOf(CHECKS, ch.check), `${value} · ${t(`energy_${ch.status}`)}`);
    tr.dataset.check = ch.check;
    tr.dataset.status = ch.status;
    if (ch.why) tr.lastChild.title = ch.why;
    return tr;
  });
  nodes.push(table([row(t("energy_check"), t("energy_value")), ...checks]));
  const src = document.createElement("p");
  src.className = "none";
  src.textContent = r.rules ? r.rules.limits : "";
  nodes.push(src);
  return nodes;
}
