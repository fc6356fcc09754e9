"""A picture of the user's own through the graph: the upload is a creation (memory/upload.py), and its image becomes
the thread's image for one fixed request, so the graph's own image → 3D step (the router's "make it 3D" →
image_to_3d on "latest", which tools.working_image resolves to the thread's image) models it and remembers the GLB
on that creation — the same path as for a generated image, for the CLI, the MCP server and the studio alike.

The user's own words with the picture ("make this 3D", "a photo of my cat") are kept as the upload's description;
making a *new* picture from one ("like this but in bronze") needs an image-to-image backend, which Atelier has not.
"""
from __future__ import annotations

from dataclasses import asdict
from typing import Any

MAKE_3D_REQUEST = "make it 3D"


def image_of(view) -> dict[str, Any]:
    """A creation's image as the graph's state keeps it (tools._asset_dict)."""
    if view.image is None:
        raise ValueError(f"creation {view.id} has no image")
    return {**asdict(view.image), "creation_id": view.id}


def picture_turn(creation_id: str, image: dict[str, Any] | None = None) -> dict[str, Any]:
    """The graph input that turns the creation's image into a 3D model. `image` is its state form (image_of); a
    client of the API server, which has no server paths, sends {"creation_id": id} and the tool finds the rest. The
    message is a plain dict so that a RemoteGraph sends it as it is."""
    return {"messages": [{"role": "user", "content": MAKE_3D_REQUEST}], "image": image or {"creation_id": creation_id},
            "creation_id": creation_id, "model": None}


def picture_configurable(user: str, thread_id: str, seed: int | None = None) -> dict[str, Any]:
    """The run's settings for picture_turn: the fixed request is the router's to decide (no model call needed), no
    prompt to enhance, the 3D step on."""
    configurable: dict[str, Any] = {"thread_id": thread_id, "user_id": user, "decision_policy": "router", "enhance": False,
                                    "auto_3d": True}
    if seed is not None:
        configurable["seed"] = seed
    return configurable
