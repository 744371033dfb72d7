"""The geometry of the city health check: road centrelines, the walking graph over them, and
network distances from facilities to buildings.

Road polygons become centrelines by a pruned medial axis: the Voronoi edges (GEOS, through
shapely) of the densified outline that lie inside the polygon, without the short branches
that run into its corners. Written here rather than taken from a library: ``centerline``
is unmaintained, and ``pygeoops`` (which does the same) pulls geopandas, pandas and topojson
into the core for this one function.

Distances over the network: the roads are noded where they cross (shapely's union), each
point (a building, a facility) is snapped to its nearest road segment (the snap distance is
added to its path), and networkx's Dijkstra from all facilities of a type at once gives every
building its distance to the nearest one.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass

import networkx as nx
import numpy as np
import shapely
from numpy.typing import NDArray

F64 = NDArray[np.float64]
#: the outline of a road polygon is cut to pieces of at most this (m) before its Voronoi edges
CENTRELINE_STEP = 1.0


def centreline(polygon: shapely.Geometry, step: float = CENTRELINE_STEP) -> shapely.Geometry:
    """The centreline of a (Multi)Polygon road surface, as a MultiLineString (empty when the
    polygon is too small to have one)."""
    if polygon.is_empty or polygon.area <= 0:
        return shapely.MultiLineString()
    dense = shapely.segmentize(polygon, step)
    points = shapely.MultiPoint(shapely.get_coordinates(dense))
    edges = shapely.get_parts(shapely.voronoi_polygons(points, only_edges=True, extend_to=dense))
    edges = edges[shapely.within(edges, polygon)]
    if len(edges) == 0:
        return shapely.MultiLineString()
    clearance = shapely.distance(
        shapely.points(shapely.get_coordinates(edges)), shapely.boundary(polygon)
    )
    # the road's width: twice the clearance of the axis (its typical vertex)
    width = 2.0 * float(np.percentile(clearance, 75))
    return _pruned(edges, width, shapely.boundary(polygon))


def _pruned(
    edges: NDArray[np.object_], width: float, outline: shapely.Geometry
) -> shapely.Geometry:
    """The medial axis without its branches shorter than the road's width that end free (the
    spokes to the corners), its free ends carried on to the road's end (the medial axis stops
    half a width short of it)."""
    g = nx.Graph()
    for e in edges:
        c = np.round(shapely.get_coordinates(e), 6)
        for a, b in itertools.pairwise(c):
            if tuple(a) != tuple(b):
                g.add_edge(tuple(a), tuple(b), length=float(np.hypot(*(b - a))))
    spurs = [_branch(g, leaf) for leaf in [n for n in g.nodes if g.degree(n) == 1]]
    # decided first, removed after: the two spokes at one end both go
    cut = [b for b, length in spurs if g.degree(b[-1]) >= 3 and length < width]
    for branch in cut:
        g.remove_nodes_from(branch[:-1])
    lines = [shapely.LineString([a, b]) for a, b in g.edges]
    for leaf in [n for n in g.nodes if g.degree(n) == 1]:
        branch, _ = _branch(g, leaf, width)
        end, back = np.array(leaf), np.array(branch[-1])
        step = end - back
        norm = float(np.hypot(*step))
        reach = float(shapely.distance(shapely.Point(leaf), outline))
        if norm > 0 and reach > 0:
            lines.append(shapely.LineString([end, end + step / norm * reach]))
    merged = shapely.line_merge(shapely.MultiLineString(lines)) if lines else None
    return merged if merged is not None else shapely.MultiLineString()


def _branch(
    g: nx.Graph, leaf: tuple[float, ...], limit: float = np.inf
) -> tuple[list[tuple[float, ...]], float]:
    """The nodes from a free end to the first fork (or ``limit`` metres on), and its length."""
    branch, length, node, prev = [leaf], 0.0, leaf, None
    while length < limit:
        nxt = [m for m in g.neighbors(node) if m != prev]
        if len(nxt) != 1:
            break
        length += g.edges[node, nxt[0]]["length"]
        prev, node = node, nxt[0]
        branch.append(node)
        if g.degree(node) != 2:
            break
    return branch, length


def road_lines(
    lines: list[shapely.Geometry], polygons: list[shapely.Geometry]
) -> NDArray[np.object_]:
    """Every road as lines: line roads as they are, polygon roads as their centrelines."""
    parts = [shapely.get_parts(g) for g in lines]
    parts += [shapely.get_parts(centreline(p)) for p in polygons]
    flat = np.concatenate(parts) if parts else np.empty(0, dtype=object)
    return flat[~shapely.is_empty(flat)] if len(flat) else flat


@dataclass
class Network:
    """The walking graph: noded road segments (as a GEOS index) and the graph over their ends."""

    segments: NDArray[np.object_]  # 2-point LineStrings
    tree: shapely.STRtree
    graph: nx.Graph

    @classmethod
    def of(cls, lines: NDArray[np.object_]) -> Network:
        noded = shapely.get_parts(shapely.line_merge(shapely.union_all(lines)))
        segs = []
        for line in noded:
            c = shapely.get_coordinates(line)
            segs += [shapely.LineString([a, b]) for a, b in itertools.pairwise(c)]
        segments = np.array(segs, dtype=object)
        g = nx.Graph()
        for s in segments:
            a, b = (tuple(np.round(p, 6)) for p in shapely.get_coordinates(s))
            if a != b:
                g.add_edge(a, b, length=float(shapely.length(s)))
        return cls(segments=segments, tree=shapely.STRtree(segments), graph=g)

    def distances(self, origins: F64, targets: F64, cutoff: float) -> tuple[F64, F64, F64]:
        """For each target point, the shortest network distance (snap distances included) to
        any of the origin points (inf beyond ``cutoff`` or unreachable); with the snap
        distances of the origins and of the targets."""
        g = self.graph.copy()
        # both at once: an origin and a target on one segment reach each other along it
        nodes, snap = self._snap(
            g, np.concatenate([origins.reshape(-1, 2), targets.reshape(-1, 2)])
        )
        k = len(origins)
        o_nodes, o_snap, t_nodes, t_snap = nodes[:k], snap[:k], nodes[k:], snap[k:]
        source = ("source",)
        for n, d in zip(o_nodes, o_snap, strict=True):
            g.add_edge(source, n, length=float(d))
        reach = nx.single_source_dijkstra_path_length(g, source, cutoff=cutoff, weight="length")
        out = np.array(
            [reach.get(n, np.inf) + d for n, d in zip(t_nodes, t_snap, strict=True)],
            dtype=np.float64,
        )
        out[out > cutoff] = np.inf
        return out, o_snap, t_snap

    def _snap(self, g: nx.Graph, points: F64) -> tuple[list[object], F64]:
        """Each point joined to the graph at its projection on the nearest segment (the
        segment split there); its node and snap distance."""
        if len(points) == 0:
            return [], np.empty(0)
        geoms = shapely.points(points)
        nearest = self.tree.nearest(geoms)
        segs = self.segments[nearest]
        snap = shapely.distance(geoms, segs)
        along = shapely.line_locate_point(segs, geoms)
        on_segment: dict[int, list[tuple[float, object]]] = defaultdict(list)
        nodes: list[object] = []
        for i, (k, t) in enumerate(zip(nearest, along, strict=True)):
            node = ("p", i)
            nodes.append(node)
            on_segment[int(k)].append((float(t), node))
        for k, stops in on_segment.items():
            a, b = (tuple(np.round(p, 6)) for p in shapely.get_coordinates(self.segments[k]))
            length = float(shapely.length(self.segments[k]))
            if g.has_edge(a, b):
                g.remove_edge(a, b)
            chain = [(0.0, a), *sorted(stops, key=lambda s: s[0]), (length, b)]
            for (t0, n0), (t1, n1) in itertools.pairwise(chain):
                if n0 == n1:
                    continue
                if g.has_edge(n0, n1):  # two points at one place: keep the shorter link
                    g.edges[n0, n1]["length"] = min(g.edges[n0, n1]["length"], t1 - t0)
                else:
                    g.add_edge(n0, n1, length=max(t1 - t0, 0.0))
        return nodes, np.asarray(snap, dtype=np.float64)


def straight_distances(origins: F64, targets: F64) -> F64:
    """For each target, the straight-line distance to the nearest origin (inf when none)."""
    if len(origins) == 0:
        return np.full(len(targets), np.inf)
    tree = shapely.STRtree(shapely.points(origins))
    _, dist = tree.query_nearest(shapely.points(targets), return_distance=True, all_matches=False)
    out: F64 = np.asarray(dist, dtype=np.float64)
    return out
