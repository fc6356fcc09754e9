"""A creation's 3D model (GLB) as the file where it goes next: a slicer (STL, 3MF), Blender (GLB, OBJ, PLY), a phone.

    export_model(glb_bytes, "stl", size_mm=80)  -> Export(data, mime, extension, facts)
    export_creation(store, creation_id, user_id, "3mf", size_mm=None)

trimesh reads the GLB and writes GLB, OBJ, STL and PLY. 3MF is written here with the standard library (zipfile +
ElementTree, the 3MF core spec's three parts), because trimesh's 3MF writer needs lxml, which Atelier does not
install. USDZ is not offered: the only well-kept writer is Pixar's usd-core (a 29 MB wheel), not installed; the
error says how to get one from the GLB.

Geometry: glTF is Y-up in metres. STL and 3MF (printing) are turned Z-up, set on the bed (lowest point z=0, centred
on x/y) and scaled so the largest dimension is size_mm millimetres (DEFAULT_PRINT_MM when not given); the mesh's
vertices are merged (texture seams split them) and checked watertight, which facts["watertight"] reports (after
trimesh's hole filling). OBJ and PLY carry the texture as vertex colours in one file, in millimetres when size_mm is
given, else in the model's own units; GLB keeps its bytes unless size_mm asks for another size (then in metres).
"""
from __future__ import annotations

import io
import logging
import math
import time
import zipfile
from dataclasses import dataclass, field
from xml.etree import ElementTree as ET

log = logging.getLogger("atelier.tools")

FORMATS = {  # format -> (mime, extension)
    "glb": ("model/gltf-binary", ".glb"),
    "obj": ("model/obj", ".obj"),
    "stl": ("model/stl", ".stl"),
    "3mf": ("model/3mf", ".3mf"),
    "ply": ("model/ply", ".ply"),
    "usdz": ("model/vnd.usdz+zip", ".usdz"),
}
PRINT_FORMATS = ("stl", "3mf")
DEFAULT_PRINT_MM = 100.0
SIZE_MM_MIN, SIZE_MM_MAX = 1.0, 10_000.0
USDZ_MISSING = ("USDZ is not offered: writing it needs Pixar's usd-core (a 29 MB wheel), which this install does not include. "
                "Export GLB and convert it with Reality Converter or Blender (File > Export > USD), or use --format glb on Android.")
_3MF_NS = "http://schemas.microsoft.com/3dmanufacturing/core/2015/02"


class ExportError(ValueError):
    """A format, a size or a model that cannot be exported; the message says which and why."""


@dataclass
class Export:
    data: bytes
    mime: str
    extension: str
    facts: dict = field(default_factory=dict)


def check_format(fmt: str) -> str:
    name = str(fmt or "").strip().lower().lstrip(".")
    if name not in FORMATS:
        raise ExportError(f"format must be one of {', '.join(FORMATS)}, not {str(fmt)[:20]!r}")
    if name == "usdz":
        raise ExportError(USDZ_MISSING)
    return name


def check_size_mm(size_mm) -> float | None:
    if size_mm is None or size_mm == "":
        return None
    try:
        value = float(size_mm)
    except (TypeError, ValueError):
        raise ExportError(f"size_mm must be a number of millimetres, not {str(size_mm)[:20]!r}") from None
    if not math.isfinite(value) or not SIZE_MM_MIN <= value <= SIZE_MM_MAX:
        raise ExportError(f"size_mm must be between {SIZE_MM_MIN:g} and {SIZE_MM_MAX:g} millimetres")
    return value


def _load(glb: bytes):
    import trimesh

    try:
        scene = trimesh.load(io.BytesIO(glb), file_type="glb", force="scene")
    except Exception as exc:
        raise ExportError(f"the model could not be read as GLB ({exc.__class__.__name__})") from None
    if not scene.geometry or scene.to_mesh().faces.shape[0] == 0:
        raise ExportError("the model has no triangles to export")
    return scene


def _solid(scene):
    """One mesh in the scene's frame, with vertices merged so that texture seams do not open it."""
    import trimesh

    mesh = scene.to_mesh()
    if isinstance(mesh.visual, trimesh.visual.texture.TextureVisuals) and mesh.visual.uv is not None:
        try:
            mesh.visual = mesh.visual.to_color()  # colours per vertex: one file, and seams can merge
        except Exception:  # a texture trimesh cannot sample: geometry alone
            mesh.visual = trimesh.visual.ColorVisuals(mesh)
    mesh.merge_vertices()
    return mesh


def _scale_to(mesh, size_mm: float) -> float:
    largest = float(max(mesh.extents))
    if largest <= 0:
        raise ExportError("the model is flat in every direction and cannot be scaled")
    factor = size_mm / largest
    mesh.apply_scale(factor)
    return factor


def _for_printing(mesh, size_mm: float):
    """Z-up (glTF is Y-up), on the bed and centred, largest dimension size_mm; watertight checked (holes filled)."""
    import trimesh

    mesh.apply_transform(trimesh.transformations.rotation_matrix(math.pi / 2, [1, 0, 0]))
    _scale_to(mesh, size_mm)
    low, high = mesh.bounds
    mesh.apply_translation([-(low[0] + high[0]) / 2, -(low[1] + high[1]) / 2, -low[2]])
    watertight = bool(mesh.is_watertight)
    if not watertight:
        trimesh.repair.fill_holes(mesh)
        trimesh.repair.fix_normals(mesh)
        watertight = bool(mesh.is_watertight)
    return mesh, watertight


def write_3mf(mesh) -> bytes:
    """A 3MF package (core spec): the mesh in millimetres, one object, one build item."""
    ET.register_namespace("", _3MF_NS)
    model = ET.Element(f"{{{_3MF_NS}}}model", {"unit": "millimeter", "xml:lang": "en-US"})
    ET.SubElement(model, f"{{{_3MF_NS}}}metadata", {"name": "Application"}).text = "Atelier"
    resources = ET.SubElement(model, f"{{{_3MF_NS}}}resources")
    obj = ET.SubElement(resources, f"{{{_3MF_NS}}}object", {"id": "1", "type": "model"})
    body = ET.SubElement(obj, f"{{{_3MF_NS}}}mesh")
    vertices = ET.SubElement(body, f"{{{_3MF_NS}}}vertices")
    for x, y, z in mesh.vertices:
        ET.SubElement(vertices, f"{{{_3MF_NS}}}vertex", {"x": f"{x:.4f}", "y": f"{y:.4f}", "z": f"{z:.4f}"})
    triangles = ET.SubElement(body, f"{{{_3MF_NS}}}triangles")
    for a, b, c in mesh.faces:
        ET.SubElement(triangles, f"{{{_3MF_NS}}}triangle", {"v1": str(a), "v2": str(b), "v3": str(c)})
    build = ET.SubElement(model, f"{{{_3MF_NS}}}build")
    ET.SubElement(build, f"{{{_3MF_NS}}}item", {"objectid": "1"})
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as package:
        package.writestr("[Content_Types].xml",
                         '<?xml version="1.0" encoding="UTF-8"?>\n<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
                         '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
                         '<Default Extension="model" ContentType="application/vnd.ms-package.3dmanufacturing-3dmodel+xml"/></Types>')
        package.writestr("_rels/.rels",
                         '<?xml version="1.0" encoding="UTF-8"?>\n<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
                         '<Relationship Target="/3D/3dmodel.model" Id="rel0" '
                         'Type="http://schemas.microsoft.com/3dmanufacturing/2013/01/3dmodel"/></Relationships>')
        package.writestr("3D/3dmodel.model", ET.tostring(model, encoding="UTF-8", xml_declaration=True))
    return out.getvalue()


def read_3mf(data: bytes):
    """The mesh of a 3MF package written by write_3mf (or any single-object 3MF), as a trimesh.Trimesh in millimetres."""
    import numpy as np
    import trimesh

    with zipfile.ZipFile(io.BytesIO(data)) as package:
        root = ET.fromstring(package.read("3D/3dmodel.model"))
    ns = {"m": _3MF_NS}
    vertices = np.array([[float(v.get(k)) for k in "xyz"] for v in root.iterfind(".//m:vertex", ns)])
    faces = np.array([[int(t.get(k)) for k in ("v1", "v2", "v3")] for t in root.iterfind(".//m:triangle", ns)])
    return trimesh.Trimesh(vertices, faces, process=False), root.get("unit")


def export_model(glb: bytes, fmt: str, size_mm=None) -> Export:
    """The GLB as `fmt` (see the module's doc for units and orientation); ExportError when it cannot be."""
    fmt, size_mm = check_format(fmt), check_size_mm(size_mm)
    mime, extension = FORMATS[fmt]
    started = time.perf_counter()
    if fmt == "glb" and size_mm is None:
        _load(glb)  # still a model we can read
        return Export(glb, mime, extension, {"format": fmt, "bytes": len(glb), "unit": "m"})
    scene = _load(glb)
    facts: dict = {"format": fmt}
    if fmt == "glb":
        largest = float(max(scene.extents))
        scene.apply_scale(size_mm / 1000.0 / largest)
        data = scene.export(file_type="glb")
        facts.update(unit="m", size_mm=size_mm)
    else:
        mesh = _solid(scene)
        if fmt in PRINT_FORMATS:
            size_mm = size_mm or DEFAULT_PRINT_MM
            mesh, facts["watertight"] = _for_printing(mesh, size_mm)
            facts.update(unit="mm", size_mm=size_mm)
        elif size_mm is not None:
            _scale_to(mesh, size_mm)
            facts.update(unit="mm", size_mm=size_mm)
        else:
            facts["unit"] = "model units (glTF: m)"
        if fmt == "3mf":
            data = write_3mf(mesh)
        elif fmt == "obj":
            data = mesh.export(file_type="obj", include_color=True, include_normals=True).encode()
        else:
            data = mesh.export(file_type="stl" if fmt == "stl" else "ply")
        facts.update(faces=int(len(mesh.faces)), vertices=int(len(mesh.vertices)),
                     extents_mm=[round(float(e), 2) for e in mesh.extents] if facts.get("unit") == "mm" else None)
    facts["bytes"] = len(data)
    log.info("step=export format=%s size_mm=%s watertight=%s bytes=%d seconds=%.3f", fmt, size_mm or "-", facts.get("watertight", "-"),
             len(data), time.perf_counter() - started)
    return Export(data, mime, extension, facts)


def export_creation(store, creation_id: str, user_id: str, fmt: str, size_mm=None) -> Export:
    """export_model on the user's creation's latest model (another user's id finds nothing, as an unknown one)."""
    from pathlib import Path

    fmt, size_mm = check_format(fmt), check_size_mm(size_mm)
    view = store.get(creation_id, user_id=user_id)
    if view is None:
        raise LookupError(f"no creation {creation_id!r} for user {user_id!r}")
    model = view.model
    if model is None or not Path(model.path).is_file():
        raise ExportError(f"creation {creation_id} has no 3D model yet (make one first: `atelier create` or make_3d)")
    if model.mime != "model/gltf-binary":
        raise ExportError(f"creation {creation_id}'s model is {model.mime}; only GLB models can be exported")
    result = export_model(Path(model.path).read_bytes(), fmt, size_mm)
    result.facts["creation_id"] = view.id
    return result
