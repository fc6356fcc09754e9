"""`relief`: an offline image->3D backend with no model weights.

It builds real geometry from the picture: a foreground mask (the image's alpha, or colour saliency against
the border with an Otsu threshold; the whole picture when that is degenerate), a height field from a rounded
"inflation" of that mask plus smoothed luminance, with edges engraved, the foreground raised and the
background left flat; then a closed (watertight) mesh: the top surface grid, side walls and a flat back,
UV-textured with the picture, exported as binary GLB.

It is a bas-relief, not a reconstruction: nothing hidden in the picture is invented. numpy, scipy, Pillow
and trimesh only.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from scipy import ndimage

from .base import Backend, BackendError, GeneratedAsset, MeshRequest, ProgressFn, no_progress

GENERATOR = "atelier-relief-v1"
MAX_TEXTURE = 1024   # longest side of the embedded texture (keeps the GLB small)
MIN_INPUT = 8        # pixels, per side


@dataclass
class HeightField:
    z: np.ndarray            # (gh+1, gw+1) heights in model units, border ring at the base height
    mask: np.ndarray         # (gh+1, gw+1) bool foreground
    mask_source: str         # alpha | saliency | whole-image
    texture: Image.Image     # RGB picture used as the texture


def decode_image(data: bytes) -> Image.Image:
    """PNG / JPEG / WebP / anything Pillow reads -> an upright RGB or RGBA image, or BackendError(transient=False)."""
    if not data:
        raise BackendError("image could not be decoded: no bytes", transient=False, backend="relief")
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
            out = img.convert("RGBA" if has_alpha else "RGB")
    except BackendError:
        raise
    except UnidentifiedImageError as exc:
        raise BackendError("image could not be decoded: not a recognised image format (PNG, JPEG, WebP, ...)",
                           transient=False, backend="relief") from exc
    except Exception as exc:  # truncated files, decompression bombs, broken chunks, ...
        raise BackendError(f"image could not be decoded: {exc.__class__.__name__}: {exc}", transient=False, backend="relief") from exc
    if min(out.size) < MIN_INPUT:
        raise BackendError(f"image too small for a relief: {out.size[0]}x{out.size[1]} (need at least {MIN_INPUT}px a side)",
                           transient=False, backend="relief")
    return out


def grid_shape(width: int, height: int, grid: int) -> tuple[int, int]:
    """Cells (gw, gh) with about grid*grid cells in all, following the picture's aspect ratio."""
    aspect = width / height
    gw = max(4, int(round(math.sqrt(grid * grid * aspect))))
    gh = max(4, int(round(grid * grid / gw)))
    return gw, gh


def _otsu(values: np.ndarray) -> tuple[float, float]:
    """Otsu threshold on values in [0, 1]; returns (threshold, separability 0..1)."""
    hist, edges = np.histogram(values, bins=256, range=(0.0, 1.0))
    p = hist.astype(np.float64) / max(1, hist.sum())
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(p)
    mu = np.cumsum(p * centres)
    mu_t = mu[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mu_t * w0 - mu) ** 2 / (w0 * (1 - w0))
    between = np.nan_to_num(between)
    k = int(np.argmax(between))
    total_var = float(np.sum(p * (centres - mu_t) ** 2))
    return float(edges[k + 1]), float(between[k] / total_var) if total_var > 1e-12 else 0.0


EDGE_TAU = 0.04      # colour step per pixel (0..1) that counts as a crisp edge at the analysis size
ANALYSIS_SIZE = 256  # longest side of the picture the mask is found on


def _saliency(rgb: np.ndarray) -> np.ndarray:
    """How unlike the background each pixel is, where the background is what the picture's border shows.

    Two background models, each forgiving of the usual gradients: (1) per row, the left and right border
    colours interpolated across (skies, horizons, vertical gradients); (2) the nearest of the border's
    colours anywhere. A pixel is salient only if it is unlike both. Values are roughly 0..1.
    """
    h, w, _ = rgb.shape
    band = max(1, min(h, w) // 64)
    left = ndimage.gaussian_filter1d(rgb[:, :band].mean(axis=1), 1.5, axis=0)
    right = ndimage.gaussian_filter1d(rgb[:, -band:].mean(axis=1), 1.5, axis=0)
    t = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :, None]
    d_row = np.linalg.norm(rgb - (left[:, None, :] * (1 - t) + right[:, None, :] * t), axis=2)

    border = np.concatenate([rgb[:band].reshape(-1, 3), rgb[-band:].reshape(-1, 3),
                             rgb[:, :band].reshape(-1, 3), rgb[:, -band:].reshape(-1, 3)])
    border = border[:: max(1, len(border) // 128)].astype(np.float32)
    flat = rgb.reshape(-1, 3).astype(np.float32)
    d2 = (flat ** 2).sum(axis=1)[:, None] + (border ** 2).sum(axis=1)[None, :] - 2.0 * flat @ border.T
    d_near = np.sqrt(np.clip(d2.min(axis=1), 0, None)).reshape(h, w)
    return ndimage.gaussian_filter(np.minimum(d_row, d_near) / math.sqrt(3.0), 1.0)


def _centre_weight(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.exp(-(((xx / max(1, w - 1)) - 0.5) ** 2) / (2 * 0.28 ** 2) - (((yy / max(1, h - 1)) - 0.55) ** 2) / (2 * 0.32 ** 2))


def _edge_region_mask(rgb: np.ndarray, sal: np.ndarray, sal_thr: float) -> np.ndarray | None:
    """The subject as the regions enclosed by crisp edges, away from the border.

    Smooth things (skies, glows, haze) have no crisp edges and fall into the border-touching background;
    the subject is the inner region with the best area x centrality x saliency, grown into neighbouring
    inner regions that look like part of it (facets, sails, details) or that it mostly surrounds.
    """
    h, w, _ = rgb.shape
    sm = ndimage.gaussian_filter(rgb, (0.8, 0.8, 0))
    grad = np.sqrt(sum(ndimage.sobel(sm[..., k], 0) ** 2 + ndimage.sobel(sm[..., k], 1) ** 2 for k in range(3)))
    edges = grad / (4 * math.sqrt(3.0)) > EDGE_TAU
    reg, n = ndimage.label(~edges)
    if n == 0:
        return None
    idx = np.arange(1, n + 1)
    ring = np.unique(np.concatenate([reg[0], reg[-1], reg[:, 0], reg[:, -1]]))
    area = ndimage.sum(np.ones_like(sal), reg, idx)
    centre = ndimage.mean(_centre_weight(h, w), reg, idx)
    mean_sal = ndimage.mean(sal, reg, idx)
    cand = ~np.isin(idx, ring) & (area >= 0.002 * h * w)
    if not cand.any():
        return None
    score = np.where(cand, area * centre * np.clip(mean_sal / max(sal_thr, 1e-3), 0.25, 1.5), 0.0)
    best = int(np.argmax(score)) + 1
    chosen = {best} | set(idx[score >= 0.7 * score[best - 1]].tolist())  # a second, equally strong subject
    sel = np.isin(reg, list(chosen))
    slices = ndimage.find_objects(reg)
    reach = max(3, int(round(0.05 * max(h, w))))
    for step in range(6):
        near = np.unique(reg[ndimage.binary_dilation(sel, iterations=reach) & ~sel])
        added = False
        for r in near.tolist():
            if r == 0 or r in chosen or not cand[r - 1]:
                continue
            sl = tuple(slice(max(0, q.start - reach - 1), q.stop + reach + 1) for q in slices[r - 1])
            own = reg[sl] == r
            shell = ndimage.binary_dilation(own, iterations=reach) & ~own & (reg[sl] != 0)
            shared = float(sel[sl][shell].mean()) if shell.any() else 0.0
            # a region the selection mostly surrounds belongs to it (details, snowcaps); a strong, salient
            # neighbour that shares a good part of its outline is another part of the subject (facets, sails)
            looks_alike = (step < 2 and shared >= 0.2 and score[r - 1] >= 0.12 * score[best - 1]
                           and mean_sal[r - 1] >= 0.5 * mean_sal[best - 1])
            if shared > 0.45 or looks_alike:
                chosen.add(r)
                added = True
        if not added:
            break
        sel = np.isin(reg, list(chosen))
    fg = sel | (edges & ndimage.binary_dilation(sel, iterations=3))  # the outline belongs to the subject
    fg = ndimage.binary_closing(fg, iterations=2)
    fg = ndimage.binary_opening(fg, iterations=1)
    return ndimage.binary_fill_holes(fg)


def _otsu_mask(sal: np.ndarray, sal_thr: float, separability: float) -> np.ndarray | None:
    """Plain saliency threshold, for subjects whose outline touches the border."""
    mask = ndimage.binary_fill_holes(ndimage.binary_opening(sal > max(sal_thr, 0.03), iterations=1))
    labels, n = ndimage.label(mask)
    if n == 0 or separability < 0.6:
        return None
    scores = ndimage.sum(_centre_weight(*sal.shape), labels, index=np.arange(1, n + 1))
    mask = np.isin(labels, np.flatnonzero(scores >= 0.3 * scores.max()) + 1)
    inside, outside = sal[mask], sal[~mask]
    if outside.size == 0 or inside.mean() < 3.0 * max(float(outside.mean()), 1e-3):
        return None
    return mask


def foreground_mask(rgb: np.ndarray, alpha: np.ndarray | None) -> tuple[np.ndarray, str]:
    """Foreground on the analysis picture: from alpha, crisp-edged salient regions, a saliency threshold,
    or (when all of those are degenerate) the whole picture."""
    h, w, _ = rgb.shape
    ok = lambda m: m is not None and 0.01 <= float(m.mean()) <= 0.85  # noqa: E731
    if alpha is not None and (alpha < 0.98).mean() > 0.01:
        mask = ndimage.binary_opening(alpha > 0.5, iterations=1)
        if ok(mask):
            return mask, "alpha"
    sal = _saliency(rgb)
    thr, separability = _otsu(np.clip(sal, 0, 1))
    mask = _edge_region_mask(rgb, sal, thr)
    if ok(mask):
        return mask, "edges+saliency"
    mask = _otsu_mask(sal, thr, separability)
    if ok(mask):
        return mask, "saliency"
    return np.ones((h, w), bool), "whole-image"


def height_field(img: Image.Image, gw: int, gh: int, depth: float, base: float) -> HeightField:
    """Samples on the (gh+1) x (gw+1) vertex grid -> heights. The border ring stays at `base`."""

    def as_arrays(picture: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
        arr = np.asarray(picture, dtype=np.float32) / 255.0
        alpha = arr[..., 3] if arr.shape[2] == 4 else None
        rgb = arr[..., :3]
        if alpha is not None:  # judge colours as they are seen: over white
            rgb = rgb * alpha[..., None] + (1 - alpha[..., None])
        return rgb, alpha

    # the mask is found on a fixed-size copy (so its thresholds mean the same for every input size) ...
    shrink = min(1.0, ANALYSIS_SIZE / max(img.size))
    analysis = img if shrink >= 1.0 else img.resize(
        (max(16, round(img.size[0] * shrink)), max(16, round(img.size[1] * shrink))), Image.Resampling.BOX)
    mask_a, source = foreground_mask(*as_arrays(analysis))
    # ... and carried to the vertex grid, where the heights live
    resample = Image.Resampling.BOX if min(img.size) > max(gw, gh) else Image.Resampling.BICUBIC
    rgb, _alpha = as_arrays(img.resize((gw + 1, gh + 1), resample))
    mask_img = Image.fromarray((mask_a * 255).astype(np.uint8)).resize((gw + 1, gh + 1), Image.Resampling.BILINEAR)
    mask = np.asarray(mask_img) >= 128
    mask[0, :] = mask[-1, :] = mask[:, 0] = mask[:, -1] = False
    if not mask.any():
        mask[1:-1, 1:-1], source = True, "whole-image"

    lum = ndimage.gaussian_filter(rgb @ np.array([0.299, 0.587, 0.114], np.float32), 0.8)
    inside = lum[mask] if mask.any() else lum.ravel()
    lo, hi = np.percentile(inside, [2, 98])
    lum_n = np.clip((lum - lo) / max(hi - lo, 1e-3), 0, 1)
    edge = np.hypot(ndimage.sobel(lum, axis=0), ndimage.sobel(lum, axis=1))
    edge_n = np.clip(edge / max(float(np.percentile(edge[mask] if mask.any() else edge, 99)), 1e-3), 0, 1)

    dist = ndimage.distance_transform_edt(mask)
    dome = np.sqrt(dist / max(float(dist.max()), 1.0))  # a rounded, "inflated" silhouette
    if source == "whole-image":  # no silhouette to inflate: mostly a luminance relief, softly domed
        relief = 0.25 * dome + 0.75 * lum_n - 0.12 * edge_n
    else:
        relief = 0.55 * dome + 0.45 * lum_n - 0.12 * edge_n
    soft = ndimage.gaussian_filter(mask.astype(np.float32), 1.0)
    relief = np.clip(relief, 0, None) * soft
    relief = ndimage.gaussian_filter(relief, 0.9)
    top = float(relief.max())
    if top > 1e-6:
        relief /= top
    z = base + (depth - base) * relief
    z[0, :] = z[-1, :] = z[:, 0] = z[:, -1] = base  # flat rim: the walls are a clean slab edge

    texture = img
    if img.mode == "RGBA":
        bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
        texture = Image.alpha_composite(bg, img)
    texture = texture.convert("RGB")
    if max(texture.size) > MAX_TEXTURE:
        texture = texture.copy()
        texture.thumbnail((MAX_TEXTURE, MAX_TEXTURE), Image.Resampling.LANCZOS)
    return HeightField(z=z.astype(np.float64), mask=mask, mask_source=source, texture=texture)


def build_mesh(z: np.ndarray, width: float, height: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A closed slab: top grid (normals +Z), side walls, and a flat back (a fan over the rim) at z=0.

    X is the picture's width, Y its height (up, as glTF expects), Z the relief towards the viewer.
    Every vertex has one UV, so the mesh is watertight by index even with its texture.
    """
    rows, cols = z.shape
    gh, gw = rows - 1, cols - 1
    r, c = np.mgrid[0:rows, 0:cols]
    u, v = c / gw, 1.0 - r / gh
    top = np.column_stack([((u - 0.5) * width).ravel(), ((v - 0.5) * height).ravel(), z.ravel()])
    uv_top = np.column_stack([u.ravel(), v.ravel()])
    idx = np.arange(rows * cols).reshape(rows, cols)

    a, b, cc, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    faces_top = np.concatenate([np.column_stack([a, cc, d]), np.column_stack([a, d, b])])

    # the rim, counter-clockwise seen from +Z: bottom edge left->right, right edge up, top edge right->left, left edge down
    ring = np.concatenate([idx[gh, :], idx[gh - 1::-1, gw], idx[0, gw - 1::-1], idx[1:gh, 0]])
    n_top, n_ring = rows * cols, len(ring)
    back = top[ring].copy()
    back[:, 2] = 0.0
    centre = np.array([[0.0, 0.0, 0.0]])
    verts = np.concatenate([top, back, centre])
    uv = np.concatenate([uv_top, uv_top[ring], [[0.5, 0.5]]])  # UV is affine in x,y: the back shows the picture mirrored

    p_i, p_n = ring, np.roll(ring, -1)
    q_i = n_top + np.arange(n_ring)
    q_n = np.roll(q_i, -1)
    walls = np.concatenate([np.column_stack([p_n, p_i, q_i]), np.column_stack([p_n, q_i, q_n])])
    m = np.full(n_ring, n_top + n_ring)
    back_faces = np.column_stack([m, q_n, q_i])
    faces = np.concatenate([faces_top, walls, back_faces]).astype(np.int64)
    return verts, faces, uv


class ReliefBackend(Backend):
    """Image -> 3D without any model: a textured, watertight bas-relief of the picture."""

    name: ClassVar[str] = "relief"
    kind: ClassVar[Literal["model"]] = "model"
    label: ClassVar[str] = "the local relief backend"
    learned: ClassVar[bool] = False  # procedural: a height field from the picture, no model

    def __init__(self, kind: str = "model", grid: int = 128, depth: float = 0.25, base: float = 0.04):
        if not 16 <= grid <= 512:
            raise ValueError("grid must be between 16 and 512")
        self._kind = kind
        self.grid = grid
        self.depth = depth
        self.base = base

    def generate(self, request: MeshRequest, progress: ProgressFn = no_progress) -> list[GeneratedAsset]:
        import trimesh  # imported here: it is the slowest import of the two offline backends

        progress(0.02, "relief: decoding the picture")
        if not isinstance(request.image, (bytes, bytearray, memoryview)):
            raise BackendError(f"image could not be decoded: expected bytes, got {type(request.image).__name__}",
                               transient=False, backend=self.name)
        img = decode_image(bytes(request.image))
        w_px, h_px = img.size
        gw, gh = grid_shape(w_px, h_px, self.grid)

        progress(0.2, f"relief: height field on a {gw}x{gh} grid")
        longest = max(w_px, h_px)
        width, height = w_px / longest, h_px / longest  # longest side 1 unit (a square picture: 1 unit wide)
        scale = math.sqrt(width * height)  # depth follows the picture's size, so a thin strip is not a deep wall
        hf = height_field(img, gw, gh, self.depth * scale, self.base * scale)

        progress(0.5, f"relief: building the mesh (foreground from {hf.mask_source})")
        verts, faces, uv = build_mesh(hf.z, width, height)
        material = trimesh.visual.material.PBRMaterial(
            name="atelier-relief", baseColorTexture=hf.texture, metallicFactor=0.0, roughnessFactor=0.85)
        mesh = trimesh.Trimesh(vertices=verts, faces=faces, process=False,
                               visual=trimesh.visual.TextureVisuals(uv=uv, material=material))
        watertight = bool(mesh.is_watertight)
        if not (watertight and mesh.is_winding_consistent and mesh.volume > 0):
            raise BackendError("relief: built a mesh that is not a closed volume (a bug)", transient=False, backend=self.name)

        progress(0.75, "relief: exporting GLB")
        scene = trimesh.Scene()
        scene.add_geometry(mesh, geom_name="relief", node_name="relief")
        data = scene.export(file_type="glb", include_normals=True)  # smooth shading; without normals viewers go flat
        if not isinstance(data, (bytes, bytearray)) or data[:4] != b"glTF":
            raise BackendError("relief: GLB export produced no glTF binary", transient=False, backend=self.name)
        progress(1.0, f"relief ready: {len(faces)} faces")
        extents = mesh.extents
        return [GeneratedAsset(
            kind="model",
            data=bytes(data),
            mime="model/gltf-binary",
            backend=self.name,
            metadata={
                "faces": int(len(faces)),
                "vertices": int(len(verts)),
                "watertight": watertight,
                "generator": GENERATOR,
                "grid": [gw, gh],
                "mask": hf.mask_source,
                "foreground_fraction": round(float(hf.mask.mean()), 4),
                "extents": [round(float(e), 4) for e in extents],
                "texture_size": list(hf.texture.size),
                "note": "bas-relief from the picture; no 3D model was used",
            },
        )]


def register_backends(register) -> None:
    register(ReliefBackend)
