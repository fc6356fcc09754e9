"""The studio's settings panel (Chainlit ChatSettings) and how its values become per-run configuration."""
from __future__ import annotations

from typing import Any

from agent.configuration import POLICIES
from agent.settings import get_settings as agent_settings
from memory.validation import InvalidInput, validate_seed, validate_size, validate_steps
from tools.settings import get_settings

SIZES = ["256x256", "384x384", "512x512", "640x640", "768x768", "1024x1024", "768x512", "512x768"]
AUTO = "auto (fallback order)"


def supported_by(knob: str, backends: list[str]) -> list[str]:
    """Those of the configured backends that honour a knob ("size", "seed", "steps"), as each backend class declares
    (supports_size ...: tools/backends/base.py) — a plugin's knobs show up without an edit here."""
    from tools.backends import supporting

    return supporting(knob, backends)


# Who decides under each policy, in the words the panel shows (agent/decision.py has the details).
POLICY_WORDS = ("auto (default): the model decides if its measured accuracy (`atelier eval decisions`) is within 2 points of the "
                "router's; otherwise the router decides and asks the model only when unsure — the packaged SmolLM2-135M measures "
                "far below the router, so with it the router decides · model: the LLM decides every step, the router only vetoes "
                "impossible calls · router: the intent router decides, the LLM is not asked · hybrid: the router decides, the LLM "
                "where the router is unsure.")


def defaults() -> dict[str, Any]:
    return {"image_backend": AUTO, "model_backend": AUTO, "enhance": True, "auto_3d": True, "review_prompt": False,
            "size": "512x512", "steps": 0, "seed": "", "decision_policy": agent_settings().decision_policy}


def widgets(values: dict[str, Any] | None = None) -> list:
    from chainlit.input_widget import Select, Slider, Switch, TextInput

    s = get_settings()
    v = {**defaults(), **(values or {})}
    items: list = []
    images, models = s.image_backend_list, s.model_backend_list
    if len(images) > 1:
        items.append(Select(id="image_backend", label="Image backend", values=[AUTO, *images], initial_value=v["image_backend"],
                            description="Which text-to-image backend to try first; the others remain fallbacks."))
    if len(models) > 1:
        items.append(Select(id="model_backend", label="3D backend", values=[AUTO, *models], initial_value=v["model_backend"],
                            description="Which image-to-3D backend to try first; the others remain fallbacks."))
    items += [
        Switch(id="enhance", label="Enhance prompts", initial=bool(v["enhance"]),
               description="Rewrite each idea into a detailed image prompt first."),
        Switch(id="auto_3d", label="Make 3D automatically", initial=bool(v["auto_3d"]),
               description="Turn every new image into a 3D model."),
        Switch(id="review_prompt", label="Review prompt before making the image", initial=bool(v["review_prompt"]),
               description="Pause after the prompt is written so you can accept or edit it."),
    ]
    if sized := supported_by("size", images):
        items.append(Select(id="size", label="Image size", values=SIZES, initial_value=v["size"] if v["size"] in SIZES else "512x512",
                            description=f"Width x height (used by: {', '.join(sized)})."))
    if stepped := supported_by("steps", images):
        items.append(Slider(id="steps", label="Sampling steps (0 = backend default)", initial=float(v["steps"] or 0), min=0, max=60, step=1,
                            description=f"Used by: {', '.join(stepped)}."))
    if supported_by("seed", images):
        items.append(TextInput(id="seed", label="Seed (empty = varies by prompt)", initial=str(v["seed"] or ""),
                               placeholder="e.g. 42", description="The same seed and prompt give the same picture."))
    items.append(Select(id="decision_policy", label="Who decides the next step", values=list(POLICIES),
                        initial_value=v["decision_policy"] if v["decision_policy"] in POLICIES else agent_settings().decision_policy,
                        description=POLICY_WORDS))
    return items


def _ordered(choice: str | None, configured: list[str]) -> list[str] | None:
    if not choice or choice == AUTO or choice not in configured:
        return None
    return [choice] + [b for b in configured if b != choice]


def to_configurable(values: dict[str, Any] | None) -> tuple[dict[str, Any], list[str]]:
    """Settings panel values -> Configuration keys, and any complaints to show the user."""
    s = get_settings()
    v = {**defaults(), **(values or {})}
    out: dict[str, Any] = {"enhance": bool(v["enhance"]), "auto_3d": bool(v["auto_3d"]), "review_prompt": bool(v["review_prompt"])}
    problems: list[str] = []
    if v.get("decision_policy") in POLICIES:
        out["decision_policy"] = v["decision_policy"]
    if (images := _ordered(v.get("image_backend"), s.image_backend_list)) is not None:
        out["image_backends"] = images
    if (models := _ordered(v.get("model_backend"), s.model_backend_list)) is not None:
        out["model_backends"] = models
    # The same rules the graph applies (memory/validation.py); here a bad value becomes a note, not a failed turn.
    size = str(v.get("size") or "512x512")
    try:
        out["width"], out["height"] = validate_size(*(int(x) for x in size.lower().split("x")))
    except (ValueError, TypeError, InvalidInput):
        problems.append(f"image size {size!r} is not valid; using 512x512")
    try:
        steps = int(float(v.get("steps") or 0))
        if steps > 0:
            out["steps"] = validate_steps(steps)
    except (TypeError, ValueError, InvalidInput) as exc:
        problems.append(f"steps: {exc}; the backend's default is used")
    seed = str(v.get("seed") or "").strip()
    if seed:
        try:
            out["seed"] = validate_seed(int(seed))
        except InvalidInput as exc:  # a whole number out of range (before ValueError: it is one)
            problems.append(f"{exc}; the seed is left to the backend")
        except ValueError:
            problems.append(f"seed {seed!r} is not a whole number; the seed is left to the backend")
    return out, problems
