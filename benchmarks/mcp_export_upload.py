"""Time issue 19's paths: exports of a relief GLB per format, validating a phone-sized photo, and Atelier's MCP
server over stdio with the official client (start, tool list, `create` without enhance, `make_3d` of a photo).

    .venv/bin/python benchmarks/mcp_export_upload.py [--repeat 3]

Offline backends (sketch, relief), a throwaway data dir. Prints the machine's load average with the figures: the
box's cores are shared, so quote both.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "support"))


def best_of(fn, repeat: int):
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return min(times), result


def photo(width: int, height: int, fmt: str) -> bytes:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    gradient = np.linspace(0, 255, width, dtype=np.float32)[None, :, None] * np.ones((height, 1, 3), np.float32)
    pixels = np.clip(gradient + rng.normal(0, 12, (height, width, 3)), 0, 255).astype(np.uint8)
    image, exif = Image.fromarray(pixels), Image.Exif()
    exif[0x0112] = 6
    out = io.BytesIO()
    image.save(out, fmt, **({"quality": 90, "exif": exif} if fmt == "JPEG" else {}))
    return out.getvalue()


def exports(repeat: int) -> None:
    from tools.backends.base import ImageRequest, MeshRequest
    from tools.backends.relief import ReliefBackend
    from tools.backends.sketch import SketchBackend
    from tools.export import export_model

    picture = SketchBackend().generate(ImageRequest(prompt="a glowing lighthouse at sunset", width=512, height=512))[0].data
    glb = ReliefBackend().generate(MeshRequest(image=picture))[0].data
    print(f"\nexport of a relief GLB ({len(glb) / 1e6:.2f} MB), best of {repeat}")
    print(f"{'format':8s} {'seconds':>8s} {'MB':>7s} watertight")
    for fmt in ("glb", "obj", "stl", "3mf", "ply"):
        seconds, result = best_of(lambda fmt=fmt: export_model(glb, fmt, 80 if fmt in ("stl", "3mf") else None), repeat)
        print(f"{fmt:8s} {seconds:8.3f} {len(result.data) / 1e6:7.2f} {result.facts.get('watertight', '-')}")


def uploads(repeat: int) -> None:
    from memory.upload import validate_picture

    print(f"\nvalidating a picture (type by content, EXIF orientation, re-encode), best of {repeat}")
    print(f"{'picture':24s} {'in MB':>6s} {'seconds':>8s} {'out MB':>7s}")
    for name, (w, h, fmt) in {"12 MP JPEG (4000x3000)": (4000, 3000, "JPEG"), "2 MP PNG (1600x1200)": (1600, 1200, "PNG")}.items():
        data = photo(w, h, fmt)
        seconds, (clean, _, _) = best_of(lambda data=data: validate_picture(data, max_bytes=50_000_000), repeat)
        print(f"{name:24s} {len(data) / 1e6:6.2f} {seconds:8.3f} {len(clean) / 1e6:7.2f}")


async def mcp_stdio(repeat: int, data_dir: str) -> None:
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    from services import atelier_env

    params = StdioServerParameters(command=sys.executable, args=["-m", "agent.cli", "mcp"], cwd=str(ROOT), env=atelier_env(data_dir))
    started = time.perf_counter()
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        ready = time.perf_counter() - started
        t0 = time.perf_counter()
        await session.list_tools()
        listed = time.perf_counter() - t0
        creates, sizes = [], []
        for i in range(repeat):
            t0 = time.perf_counter()
            result = await session.call_tool("create", {"idea": f"a paper lantern number {i}", "enhance": False})
            creates.append(time.perf_counter() - t0)
            assert not result.isError, result.content[0].text
            sizes = [len(base64.b64decode(c.data if c.type == "image" else c.resource.blob)) for c in result.content[1:]]
        picture = photo(1600, 1200, "JPEG")
        t0 = time.perf_counter()
        made = await session.call_tool("make_3d", {"image_base64": base64.b64encode(picture).decode(), "filename": "photo.jpg"})
        lifted = time.perf_counter() - t0
        assert not made.isError, made.content[0].text
    print("\nMCP over stdio (official client; sketch + relief, create without enhance)")
    print(f"start to initialized {ready:.2f} s · tools/list {listed * 1000:.0f} ms · create median {statistics.median(creates):.2f} s "
          f"(n={repeat}; picture {sizes[0] / 1e3:.0f} KB, GLB {sizes[1] / 1e6:.2f} MB in the result) · make_3d of a 2 MP photo {lifted:.2f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    print(f"machine: {os.cpu_count()} cores, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    exports(args.repeat)
    uploads(args.repeat)
    with tempfile.TemporaryDirectory(prefix="atelier-bench-mcp-") as data_dir:
        asyncio.run(mcp_stdio(args.repeat, data_dir))
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
