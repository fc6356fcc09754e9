"""Marching cubes for the mesh backend: scikit-image's Lewiner implementation (what hy3dgen's 'mc' extractor
calls) on a grid that is on the CPU."""
from __future__ import annotations

import numpy as np


def marching_cubes(grid, level: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(vertices in index units (V, 3) float64, faces (F, 3) int64) of the `level` set of a 3-D grid (a torch
    tensor or an array; NaN = not decoded, as hy3dgen leaves it)."""
    from skimage import measure

    volume = grid.detach().float().cpu().numpy() if hasattr(grid, "detach") else np.asarray(grid, np.float32)
    verts, faces, _normals, _values = measure.marching_cubes(volume, level, method="lewiner")
    return verts.astype(np.float64), faces.astype(np.int64)
