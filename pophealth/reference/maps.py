"""Choropleth maps of LSOA values from the official boundaries, drawn offline.

::

    from pophealth.reference.linkage import area_boundaries
    from pophealth.reference.maps import choropleth

    geo = area_boundaries(store)              # None for a store without boundaries
    if geo is not None:
        fig = choropleth(by_lsoa, geo, value="pct_high_risk", title="High tier, %")

The map uses Plotly's MapLibre trace with the blank ``white-bg`` style: no tile server is
contacted, so the figure works in a self-contained offline report. Areas without a
value (suppressed or no data) are drawn in light grey, never left out silently.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def _extent(geojson: dict) -> tuple[float, float, float, float]:
    """(min lon, min lat, max lon, max lat) of every coordinate in the collection."""
    lons: list[np.ndarray] = []
    lats: list[np.ndarray] = []

    for f in geojson.get("features", []):
        geom = f.get("geometry") or {}
        if geom.get("type") == "Polygon":
            for ring in geom["coordinates"]:
                pts = np.asarray(ring, dtype=float)
                lons.append(pts[:, 0])
                lats.append(pts[:, 1])
        elif geom.get("type") == "MultiPolygon":
            for poly in geom["coordinates"]:
                for ring in poly:
                    pts = np.asarray(ring, dtype=float)
                    lons.append(pts[:, 0])
                    lats.append(pts[:, 1])
    if not lons:
        return (-1.5, 52.5, -1.5, 52.5)  # England
    lon = np.concatenate(lons)
    lat = np.concatenate(lats)
    return float(lon.min()), float(lat.min()), float(lon.max()), float(lat.max())


def choropleth(
    values: pd.DataFrame,
    geojson: dict,
    *,
    value: str,
    lsoa_column: str = "lsoa_code",
    title: str = "",
    colorbar_title: str | None = None,
    colorscale: str = "Viridis",
    height: int = 520,
):
    """A Plotly choropleth of ``values[value]`` by ``values[lsoa_column]`` over the
    features of ``geojson`` (``feature.id`` = LSOA code, as :func:`load_boundaries`
    and :func:`~pophealth.reference.linkage.area_boundaries` give). Returns a
    ``plotly.graph_objects.Figure``."""
    import plotly.graph_objects as go

    if lsoa_column not in values or value not in values:
        raise KeyError(f"values needs columns {lsoa_column!r} and {value!r}")
    ids = [f.get("id") for f in geojson.get("features", [])]
    frame = values[[lsoa_column, value]].drop_duplicates(lsoa_column).set_index(lsoa_column)
    v = frame[value].reindex(ids).astype("float64")
    known = v.notna().to_numpy()
    ids_arr = np.asarray(ids, dtype=object)
    lon0, lat0, lon1, lat1 = _extent(geojson)
    span = max(lon1 - lon0, (lat1 - lat0) * 1.6, 1e-3)
    zoom = float(np.clip(np.log2(360.0 / span) - 0.6, 3.0, 14.0))
    fig = go.Figure()
    if (~known).any():
        fig.add_trace(
            go.Choroplethmap(
                geojson=geojson,
                locations=ids_arr[~known],
                z=np.zeros(int((~known).sum())),
                colorscale=[[0, "#dddddd"], [1, "#dddddd"]],
                showscale=False,
                marker_line_width=0.3,
                name="no value",
                hovertemplate="%{location}: no value<extra></extra>",
            )
        )
    fig.add_trace(
        go.Choroplethmap(
            geojson=geojson,
            locations=ids_arr[known],
            z=v.to_numpy()[known],
            colorscale=colorscale,
            marker_line_width=0.3,
            colorbar={"title": {"text": colorbar_title or value}},
            name=value,
            hovertemplate="%{location}: %{z}<extra></extra>",
        )
    )
    fig.update_layout(
        title=title,
        height=height,
        margin={"l": 0, "r": 0, "t": 40 if title else 0, "b": 0},
        map={
            "style": "white-bg",
            "center": {"lon": (lon0 + lon1) / 2, "lat": (lat0 + lat1) / 2},
            "zoom": zoom,
        },
    )
    return fig
