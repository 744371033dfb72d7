"""The sun and the sky at the site for one year, and what a PV facet makes of them (pvlib).

``site_weather`` builds an hourly year from pvlib's solar positions and the Ineichen clear sky
(with pvlib's bundled Linke turbidity, read offline from the package's own file), scaled month
by month to the site's climate row in ``schemas/standards/pv-rules.json`` and split into
direct and diffuse light by Erbs; ``weather_file`` reads a TMY3 or EPW file instead (pvlib's
readers). ``FacetSky`` turns a facet's tilt and azimuth into plane-of-array light (Perez or
Hay-Davies), and ``pvwatts_yield`` into AC energy per kWp (PVWatts) once shading has been
applied to the direct part.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cim.errors import InputFileError

log = logging.getLogger(__name__)

F64 = NDArray[np.float64]


@dataclass
class Weather:
    """One hourly year at the site (arrays of the same length, hour midpoints)."""

    lat: float
    lon: float
    times: Any  # pandas DatetimeIndex
    ghi: F64
    dni: F64
    dhi: F64
    temp_air: F64
    wind_speed: F64
    zenith: F64  # apparent (refraction-corrected) zenith, degrees
    azimuth: F64  # degrees clockwise from north
    dni_extra: F64
    airmass: F64
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def sun_up(self) -> NDArray[np.bool_]:
        up: NDArray[np.bool_] = (self.zenith < 90.0) & (self.dni > 0.0)
        return up

    def sun_vectors(self) -> F64:
        """(n, 3) unit vectors toward the sun (x east, y north, z up)."""
        el = np.radians(90.0 - self.zenith)
        az = np.radians(self.azimuth)
        return np.column_stack([np.cos(el) * np.sin(az), np.cos(el) * np.cos(az), np.sin(el)])

    def annual_ghi(self) -> float:
        return float(self.ghi.sum() / 1000.0)


def _utc_offset(lon: float) -> int:
    return round(lon / 15.0)


def _solar(lat: float, lon: float, times: Any) -> tuple[F64, F64, F64, F64, F64]:
    import pvlib

    sp = pvlib.solarposition.get_solarposition(times, lat, lon)
    zen = sp["apparent_zenith"].to_numpy(np.float64)
    azi = sp["azimuth"].to_numpy(np.float64)
    extra = pvlib.irradiance.get_extra_radiation(times).to_numpy(np.float64)
    am = pvlib.atmosphere.get_relative_airmass(zen)
    am = np.nan_to_num(np.asarray(am, dtype=np.float64), nan=0.0)
    return zen, azi, sp["zenith"].to_numpy(np.float64), extra, am


def site_weather(
    lat: float, lon: float, altitude: float, climate: dict[str, Any] | None, year: int = 2023
) -> Weather:
    """An hourly year from the clear sky scaled to ``climate`` (the rules file's monthly
    rows), or the plain clear sky when the site is outside the climate row's reach."""
    import pandas as pd
    import pvlib

    tz = f"Etc/GMT{-_utc_offset(lon):+d}"
    times = pd.date_range(f"{year}-01-01 00:30", periods=8760, freq="h", tz=tz)
    zen, azi, true_zen, extra, am = _solar(lat, lon, times)
    linke = pvlib.clearsky.lookup_linke_turbidity(times, lat, lon)
    am_abs = pvlib.atmosphere.get_absolute_airmass(am, pvlib.atmosphere.alt2pres(altitude))
    with np.errstate(divide="ignore", invalid="ignore"):
        cs = pvlib.clearsky.ineichen(
            zen, am_abs, linke.to_numpy(), altitude=altitude, dni_extra=extra
        )
    clear_ghi = np.nan_to_num(np.asarray(cs["ghi"], dtype=np.float64))
    month = times.month.to_numpy() - 1
    reach = _reach_km(lat, lon, climate)
    source: dict[str, Any] = {
        "kind": "clear sky (Ineichen, pvlib's Linke turbidity)",
        "linke_turbidity_monthly": [
            round(float(v), 2) for v in linke.groupby(linke.index.month).mean()
        ],
    }
    if climate is not None and reach is not None and reach <= float(climate["max_distance_km"]):
        days = np.bincount(month, minlength=12) / 24.0
        target = np.asarray(climate["ghi_kwh_m2_day"], dtype=np.float64) * days * 1000.0
        have = np.bincount(month, weights=clear_ghi, minlength=12)
        scale = np.divide(target, have, out=np.ones(12), where=have > 0)
        ghi = clear_ghi * scale[month]
        temp = np.asarray(climate["temp_air_c"], dtype=np.float64)[month]
        wind = np.full(len(times), float(climate["wind_speed_m_s"]))
        source.update(
            kind="clear sky scaled to the site's monthly climate, split by Erbs",
            site=climate["site"],
            clearness_scale=[round(float(s), 3) for s in scale],
            climate_source=climate["source"],
            verified=bool(climate["verified"]),
        )
    else:
        ghi = clear_ghi
        temp = np.full(len(times), 15.0)
        wind = np.full(len(times), 2.0)
        source.update(
            note="the site is outside the rules file's climate row: clear sky, no clouds "
            "(an upper bound); give --weather FILE for the site's climate",
            verified=False,
        )
    doy = times.day_of_year.to_numpy()
    split = pvlib.irradiance.erbs(ghi, true_zen, doy)
    dni = np.nan_to_num(np.asarray(split["dni"], dtype=np.float64))
    dhi = np.nan_to_num(np.asarray(split["dhi"], dtype=np.float64))
    dni[zen >= 90.0] = 0.0
    return Weather(lat, lon, times, ghi, dni, dhi, temp, wind, zen, azi, extra, am, source)


def _reach_km(lat: float, lon: float, climate: dict[str, Any] | None) -> float | None:
    if climate is None:
        return None
    p1, p2 = math.radians(lat), math.radians(float(climate["lat"]))
    dl = math.radians(lon - float(climate["lon"]))
    c = math.sin(p1) * math.sin(p2) + math.cos(p1) * math.cos(p2) * math.cos(dl)
    return 6371.0 * math.acos(max(-1.0, min(1.0, c)))


def weather_file(path: Path) -> Weather:
    """A TMY3 (.csv) or EPW (.epw) file read with pvlib's readers; its own site."""
    import pvlib

    try:
        if path.suffix.lower() == ".epw":
            data, meta = pvlib.iotools.read_epw(str(path))
        else:
            data, meta = pvlib.iotools.read_tmy3(str(path), map_variables=True)
    except FileNotFoundError as err:
        raise InputFileError(f"{path}: no such weather file") from err
    except Exception as err:  # a reader's error is the user's file
        raise InputFileError(
            f"{path} is not a TMY3 (.csv) or EPW (.epw) weather file pvlib can read: {err}"
        ) from err
    need = ["ghi", "dni", "dhi", "temp_air", "wind_speed"]
    missing = [c for c in need if c not in data.columns]
    if missing or len(data) < 8760:
        raise InputFileError(
            f"{path}: a weather file needs a year of hourly {', '.join(need)} "
            f"(missing {missing or 'hours'}; it has {len(data)} rows)"
        )
    data = data.iloc[:8760]
    lat = float(meta.get("latitude", meta.get("Latitude")))
    lon = float(meta.get("longitude", meta.get("Longitude")))
    # the sun is taken at the middle of each hour: pvlib stamps an EPW row with the hour's
    # start (it moves EPW's hour-ending stamps back an hour), a TMY3 row with its end
    import pandas as pd

    half = pd.Timedelta(minutes=30)
    times = data.index + half if path.suffix.lower() == ".epw" else data.index - half
    zen, azi, _, extra, am = _solar(lat, lon, times)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    source = {
        "kind": "weather file",
        "file": str(path),
        "sha256": digest,
        "site": f"{lat:.3f}, {lon:.3f}",
        "verified": True,
    }
    arr = {c: np.nan_to_num(data[c].to_numpy(np.float64)) for c in need}
    return Weather(
        lat,
        lon,
        times,
        arr["ghi"],
        arr["dni"],
        arr["dhi"],
        arr["temp_air"],
        arr["wind_speed"],
        zen,
        azi,
        extra,
        am,
        source,
    )


@dataclass
class PlaneLight:
    """Plane-of-array light on a facet, W/m2 each hour, before shading."""

    beam: F64  # after the incidence-angle loss (physical IAM)
    diffuse: F64  # sky + ground reflected
    cos_incidence: F64
    sky: F64  # the sky's part of the diffuse light (what buildings around can hide)


class FacetSky:
    """Plane-of-array light by tilt and azimuth (cached to a tenth of a degree)."""

    def __init__(self, weather: Weather, transposition: str = "perez", albedo: float = 0.2):
        if transposition not in ("perez", "haydavies"):
            raise InputFileError(
                f"pv rules: transposition {transposition!r} is not 'perez' or 'haydavies'"
            )
        self.weather = weather
        self.model = transposition
        self.albedo = albedo
        self._cache: dict[tuple[float, float], PlaneLight] = {}

    def light(self, tilt: float, azimuth: float) -> PlaneLight:
        key = (round(tilt, 1), round(azimuth % 360.0, 1) if tilt > 0.05 else 180.0)
        hit = self._cache.get(key)
        if hit is None:
            hit = self._cache[key] = self._light(*key)
        return hit

    def _light(self, tilt: float, azimuth: float) -> PlaneLight:
        import pvlib

        w = self.weather
        poa = pvlib.irradiance.get_total_irradiance(
            tilt,
            azimuth,
            w.zenith,
            w.azimuth,
            w.dni,
            w.ghi,
            w.dhi,
            dni_extra=w.dni_extra,
            airmass=w.airmass,
            albedo=self.albedo,
            model=self.model,
        )
        aoi = np.asarray(pvlib.irradiance.aoi(tilt, azimuth, w.zenith, w.azimuth), np.float64)
        iam = np.nan_to_num(np.asarray(pvlib.iam.physical(aoi), dtype=np.float64))
        beam = np.nan_to_num(np.asarray(poa["poa_direct"], dtype=np.float64)) * iam
        sky = np.nan_to_num(np.asarray(poa["poa_sky_diffuse"], dtype=np.float64))
        diffuse = sky + np.nan_to_num(np.asarray(poa["poa_ground_diffuse"], dtype=np.float64))
        return PlaneLight(
            beam=beam, diffuse=diffuse, cos_incidence=np.cos(np.radians(aoi)), sky=sky
        )


def pvwatts_yield(effective: F64, weather: Weather, system: dict[str, Any]) -> tuple[float, float]:
    """AC kWh per kWp over the year and the plane-of-array kWh/m2, by PVWatts: cell
    temperature (SAPM), DC with the temperature coefficient, system losses, the inverter."""
    import pvlib

    params = pvlib.temperature.TEMPERATURE_MODEL_PARAMETERS["sapm"][system["temperature_model"]]
    cell = pvlib.temperature.sapm_cell(effective, weather.temp_air, weather.wind_speed, **params)
    dc = pvlib.pvsystem.pvwatts_dc(
        effective, np.asarray(cell), pdc0=1000.0, gamma_pdc=float(system["gamma_pdc_per_c"])
    )
    dc = np.asarray(dc, dtype=np.float64) * (1.0 - float(system["system_losses_pct"]) / 100.0)
    ac = pvlib.inverter.pvwatts(
        dc,
        pdc0=1000.0 / float(system["dc_ac_ratio"]),
        eta_inv_nom=float(system["inverter_efficiency"]),
    )
    ac = np.clip(np.nan_to_num(np.asarray(ac, dtype=np.float64)), 0.0, None)
    return float(ac.sum() / 1000.0), float(effective.sum() / 1000.0)
