"""Marching cubes for the mesh backend: scikit-image's Lewiner implementation (what hy3dgen's 'mc' extractor
calls) for a grid on the CPU; a vectorised torch implementation for a grid on a GPU, so the volume does not cross
to the host and the extraction runs where the grid is.

The torch version is classic marching cubes whose case table is derived here rather than typed in: for each of
the 256 inside/outside patterns of a cell's corners, every cube face joins its edge crossings with segments (an
ambiguous face, two diagonal corners inside, cuts off its inside corners: a rule that depends only on the face,
so the two cells sharing it agree and the surface has no cracks); the segments close into loops (each crossing
edge lies on two faces); each loop becomes a triangle fan, wound as scikit-image winds its triangles. Vertices
are the linear interpolation on each crossing edge, one per grid edge, exactly scikit-image's; the triangles
inside a cell may be split differently (and scikit-image's Lewiner variant adds a vertex inside some ambiguous
cells). Cells with an
undecoded (NaN) corner make no faces (scikit-image makes faces with NaN vertices there, which trimesh drops).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

CORNERS = [((c >> 0) & 1, (c >> 1) & 1, (c >> 2) & 1) for c in range(8)]  # corner c -> offset (di, dj, dk)
# the 12 cell edges as (corner with the axis bit 0, axis)
EDGES = [(c, axis) for axis in range(3) for c in range(8) if not (c >> axis) & 1]


def _edge_index(c0: int, c1: int) -> int:
    low, axis = min(c0, c1), (c0 ^ c1).bit_length() - 1
    return EDGES.index((low, axis))


@lru_cache(maxsize=1)
def case_table() -> tuple[np.ndarray, np.ndarray]:
    """(triangles (256, 15) local edge indices, -1 padded; triangle counts (256,))."""
    table = np.full((256, 15), -1, np.int64)
    counts = np.zeros(256, np.int64)
    pos = np.array(CORNERS, float)
    for case in range(256):
        inside = [(case >> c) & 1 for c in range(8)]
        links: dict[int, list[int]] = {}
        for axis in range(3):
            u, v = [a for a in range(3) if a != axis]
            for side in (0, 1):
                ring = []  # the face's corners in cyclic order
                for du, dv in ((0, 0), (1, 0), (1, 1), (0, 1)):
                    ring.append((side << axis) | (du << u) | (dv << v))
                crossings = [(i, _edge_index(ring[i], ring[(i + 1) % 4])) for i in range(4)
                             if inside[ring[i]] != inside[ring[(i + 1) % 4]]]
                if len(crossings) == 2:
                    pairs = [(crossings[0][1], crossings[1][1])]
                elif len(crossings) == 4:
                    # ambiguous: the inside corners are cut off, each by the segment joining its two edges
                    around = [i for i in range(4) if inside[ring[i]]]
                    pairs = [(_edge_index(ring[(i - 1) % 4], ring[i]), _edge_index(ring[i], ring[(i + 1) % 4])) for i in around]
                else:
                    pairs = []
                for a, b in pairs:
                    links.setdefault(a, []).append(b)
                    links.setdefault(b, []).append(a)
        tris: list[int] = []
        unvisited = set(links)
        while unvisited:
            start = min(unvisited)
            loop, previous, current = [start], None, start
            while True:
                unvisited.discard(current)
                nxt = [e for e in links[current] if e != previous]
                step = nxt[0] if nxt else links[current][0]
                if step == start:
                    break
                loop.append(step)
                previous, current = current, step
            # orientation: scikit-image's (its right-hand normals point from outside to inside, up the values)
            points = np.array([(pos[EDGES[e][0]] + pos[EDGES[e][0] | (1 << EDGES[e][1])]) / 2 for e in loop])
            normal = np.zeros(3)
            for i in range(len(points)):
                a, b = points[i], points[(i + 1) % len(points)]
                normal += np.cross(a, b)
            outward = np.zeros(3)
            for e in loop:
                c0, c1 = EDGES[e][0], EDGES[e][0] | (1 << EDGES[e][1])
                outward += (pos[c1] - pos[c0]) if inside[c0] else (pos[c0] - pos[c1])
            if normal @ outward > 0:
                loop.reverse()
            for i in range(1, len(loop) - 1):
                tris += [loop[0], loop[i], loop[i + 1]]
        table[case, :len(tris)] = tris
        counts[case] = len(tris) // 3
    return table, counts


def marching_cubes_torch(grid, level: float = 0.0):
    """(vertices (V, 3) float32 in index units, faces (F, 3) int64), both torch tensors on the grid's device."""
    import torch

    device = grid.device
    values = grid.float()
    table, counts = (torch.from_numpy(t).to(device) for t in case_table())
    nx, ny, nz = values.shape
    inside = values > level
    valid = ~torch.isnan(values)
    case = torch.zeros((nx - 1, ny - 1, nz - 1), dtype=torch.int64, device=device)
    complete = torch.ones_like(case, dtype=torch.bool)
    for c, (di, dj, dk) in enumerate(CORNERS):
        view = (slice(di, di + nx - 1), slice(dj, dj + ny - 1), slice(dk, dk + nz - 1))
        case |= inside[view].long() << c
        complete &= valid[view]
    case = torch.where(complete, case, torch.zeros_like(case))
    cells = torch.nonzero((case != 0) & (case != 255))
    cell_case = case[cells[:, 0], cells[:, 1], cells[:, 2]]
    per_cell = counts[cell_case]
    if int(per_cell.sum()) == 0:
        return torch.zeros((0, 3), device=device), torch.zeros((0, 3), dtype=torch.int64, device=device)
    owner = torch.repeat_interleave(torch.arange(len(cells), device=device), per_cell)
    first = torch.cumsum(per_cell, 0) - per_cell
    k = torch.arange(len(owner), device=device) - first[owner]
    local = table[cell_case[owner]].view(-1, 5, 3)[torch.arange(len(owner), device=device), k]  # (T, 3) edge ids
    edge_origin = torch.tensor([CORNERS[c0] for c0, _ in EDGES], device=device)  # (12, 3)
    edge_axis = torch.tensor([axis for _, axis in EDGES], device=device)
    origin = cells[owner][:, None, :] + edge_origin[local]  # (T, 3, 3) grid point at each edge's low end
    axis = edge_axis[local]
    key = ((origin[..., 0] * ny + origin[..., 1]) * nz + origin[..., 2]) * 3 + axis  # one id per grid edge
    unique, faces = torch.unique(key.reshape(-1), return_inverse=True)
    axis_u = unique % 3
    point = unique // 3
    p0 = torch.stack([point // (ny * nz), (point // nz) % ny, point % nz], dim=1)
    p1 = p0 + torch.nn.functional.one_hot(axis_u, 3)
    v0 = values[p0[:, 0], p0[:, 1], p0[:, 2]]
    v1 = values[p1[:, 0], p1[:, 1], p1[:, 2]]
    t = ((level - v0) / (v1 - v0)).clamp(0, 1)
    vertices = p0.float() + t[:, None] * (p1 - p0).float()
    return vertices, faces.view(-1, 3)


def marching_cubes(grid, level: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(vertices in index units (V, 3) float64, faces (F, 3) int64) of the `level` set of a 3-D grid (a torch
    tensor or an array; NaN = not decoded, as hy3dgen leaves it): on its GPU when the grid is on one, else
    scikit-image's."""
    if getattr(grid, "is_cuda", False):
        vertices, faces = marching_cubes_torch(grid, level)
        return vertices.double().cpu().numpy(), faces.cpu().numpy()
    from skimage import measure

    volume = grid.detach().float().cpu().numpy() if hasattr(grid, "detach") else np.asarray(grid, np.float32)
    decoded = volume[~np.isnan(volume)]
    if decoded.size == 0 or not decoded.min() <= level < decoded.max():  # no crossing: skimage would raise
        return np.zeros((0, 3)), np.zeros((0, 3), np.int64)
    verts, faces, _normals, _values = measure.marching_cubes(volume, level, method="lewiner")
    return verts.astype(np.float64), faces.astype(np.int64)
