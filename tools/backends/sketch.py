"""`sketch`: an offline text->image backend with no model weights.

It paints a deterministic, prompt-derived *sketch*: a palette from colour and mood words, a sky/ground
gradient with a sun or moon, distant hills, and a light, softly shaded central subject built from a few
shape primitives (chosen from the subject words), so the relief step has a clear foreground to raise.

It is honest about what it is: every picture carries a "SKETCH · no image model" caption, the PNG has
text chunks saying so, and the asset metadata says {"is_sketch": True, "generator": "atelier-sketch-v1"}.
Pillow + numpy only.
"""
from __future__ import annotations

import colorsys
import hashlib
import io
import re
from dataclasses import dataclass, replace
from typing import ClassVar, Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from PIL.PngImagePlugin import PngInfo

from .base import Backend, BackendError, GeneratedAsset, ImageRequest, ProgressFn, no_progress

GENERATOR = "atelier-sketch-v1"
CAPTION = "SKETCH · no image model"
MIN_SIZE, MAX_SIZE = 64, 2048

RGB = tuple[int, int, int]

COLOUR_WORDS: dict[str, RGB] = {
    "red": (220, 60, 60), "crimson": (190, 30, 60), "scarlet": (230, 45, 40), "ruby": (200, 30, 70),
    "orange": (245, 140, 50), "amber": (245, 170, 40), "peach": (250, 190, 150), "coral": (250, 125, 100),
    "yellow": (245, 215, 70), "gold": (230, 185, 70), "golden": (230, 185, 70), "lemon": (250, 235, 90),
    "green": (80, 170, 90), "emerald": (40, 170, 110), "lime": (160, 220, 60), "mint": (160, 230, 190),
    "olive": (130, 140, 60), "jade": (60, 170, 130),
    "teal": (40, 160, 160), "cyan": (60, 210, 230), "turquoise": (60, 200, 200), "aqua": (80, 220, 220),
    "blue": (70, 120, 220), "azure": (70, 150, 240), "cobalt": (40, 80, 200), "sapphire": (40, 70, 180),
    "navy": (30, 40, 110), "indigo": (75, 60, 160),
    "purple": (140, 80, 200), "violet": (150, 90, 220), "lavender": (185, 165, 235), "lilac": (200, 160, 220),
    "magenta": (210, 60, 170), "pink": (240, 140, 180), "rose": (235, 110, 140), "fuchsia": (230, 60, 180),
    "white": (242, 242, 242), "ivory": (245, 240, 220), "silver": (200, 205, 215), "pearl": (235, 230, 225),
    "grey": (140, 140, 150), "gray": (140, 140, 150), "black": (35, 35, 40), "obsidian": (30, 25, 40),
    "brown": (135, 90, 55), "copper": (190, 110, 70), "bronze": (175, 125, 65), "rust": (170, 80, 40),
}


@dataclass(frozen=True)
class Theme:
    name: str
    sky_top: RGB
    sky_horizon: RGB
    ground_far: RGB
    ground_near: RGB
    light: RGB          # colour of the sun / moon / glow
    subject: RGB        # base colour of the subject (lightened further when painted)
    light_kind: str = "sun"   # sun | moon | none
    light_height: float = 0.45  # 0 = at the horizon, 1 = top of the picture
    stars: bool = False
    grid: bool = False  # neon grid on the ground


THEMES: dict[str, Theme] = {
    "day": Theme("day", (70, 130, 210), (195, 222, 245), (130, 175, 105), (72, 122, 62), (255, 250, 225), (245, 236, 214)),
    "sunset": Theme("sunset", (42, 40, 98), (255, 142, 72), (125, 62, 74), (48, 28, 50), (255, 205, 125), (255, 218, 176), light_height=0.12),
    "dawn": Theme("dawn", (112, 132, 205), (255, 192, 165), (150, 142, 138), (82, 80, 96), (255, 232, 195), (255, 236, 222), light_height=0.2),
    "night": Theme("night", (8, 12, 42), (42, 62, 122), (22, 32, 58), (10, 14, 30), (222, 232, 255), (205, 218, 248), light_kind="moon", light_height=0.6, stars=True),
    "forest": Theme("forest", (118, 168, 150), (212, 232, 202), (64, 112, 64), (28, 68, 40), (242, 255, 212), (226, 242, 204)),
    "ocean": Theme("ocean", (58, 138, 210), (202, 236, 246), (42, 112, 172), (18, 58, 118), (255, 250, 232), (248, 240, 222)),
    "desert": Theme("desert", (88, 150, 212), (246, 222, 182), (226, 186, 122), (188, 138, 80), (255, 244, 210), (252, 242, 222)),
    "snow": Theme("snow", (148, 178, 222), (232, 240, 250), (234, 240, 248), (196, 212, 234), (255, 255, 245), (214, 158, 118)),
    "autumn": Theme("autumn", (118, 150, 202), (250, 214, 160), (192, 112, 52), (118, 58, 30), (255, 226, 170), (255, 228, 190)),
    "space": Theme("space", (4, 4, 18), (62, 30, 92), (32, 26, 52), (14, 10, 26), (236, 220, 255), (226, 212, 252), light_kind="moon", light_height=0.7, stars=True),
    "fire": Theme("fire", (42, 10, 12), (232, 92, 32), (62, 22, 16), (24, 10, 10), (255, 176, 84), (255, 214, 150), light_height=0.1),
    "neon": Theme("neon", (20, 10, 52), (232, 62, 162), (32, 20, 72), (10, 6, 32), (84, 242, 255), (238, 220, 255), light_height=0.18, grid=True),
    "storm": Theme("storm", (50, 56, 72), (122, 128, 142), (62, 68, 72), (30, 34, 40), (220, 226, 236), (222, 226, 232), light_kind="none"),
    "meadow": Theme("meadow", (92, 158, 228), (214, 236, 250), (136, 196, 92), (64, 142, 56), (255, 250, 220), (255, 244, 232)),
}

MOOD_WORDS: dict[str, tuple[str, ...]] = {
    "sunset": ("sunset", "dusk", "evening", "twilight", "sundown"),
    "dawn": ("dawn", "sunrise", "morning", "daybreak"),
    "night": ("night", "midnight", "nocturnal", "moonlight", "moonlit", "starry", "nighttime"),
    "forest": ("forest", "woods", "woodland", "jungle", "grove", "rainforest", "moss", "mossy"),
    "ocean": ("ocean", "sea", "beach", "coast", "underwater", "island", "lake", "river", "harbor", "harbour", "wave", "waves"),
    "desert": ("desert", "dune", "dunes", "sand", "sandy", "canyon", "savanna", "oasis"),
    "snow": ("snow", "snowy", "winter", "ice", "icy", "frozen", "arctic", "frost", "glacier"),
    "autumn": ("autumn", "fall", "harvest", "october"),
    "space": ("space", "cosmic", "galaxy", "nebula", "cosmos", "planet", "orbit", "astronaut", "stars"),
    "fire": ("fire", "lava", "volcano", "volcanic", "inferno", "flames", "burning", "ember", "embers", "hell"),
    "neon": ("neon", "cyberpunk", "synthwave", "futuristic", "vaporwave", "retrowave", "cyber"),
    "storm": ("storm", "stormy", "rain", "rainy", "gloomy", "thunder", "overcast"),
    "meadow": ("meadow", "spring", "garden", "flowers", "field", "summer", "sunny"),
}

GLOW_WORDS = {"glowing", "glow", "glows", "luminous", "shining", "radiant", "bioluminescent", "magical", "magic",
              "sparkling", "glittering", "lantern", "neon", "ethereal", "light", "lights", "lit", "bright", "fireflies"}
MIST_WORDS = {"mist", "misty", "fog", "foggy", "haze", "hazy", "dreamy", "ethereal", "smoky"}
DARK_WORDS = {"dark", "gloomy", "moody", "shadowy", "noir", "sinister", "haunted", "spooky"}
PASTEL_WORDS = {"pastel", "soft", "gentle", "cute", "kawaii", "whimsical", "cozy", "cosy"}

SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "tower": ("tower", "castle", "lighthouse", "skyscraper", "building", "city", "temple", "cathedral", "church",
              "fortress", "palace", "spire", "citadel", "tower's", "minaret", "pagoda", "windmill"),
    "tree": ("tree", "trees", "oak", "pine", "willow", "bonsai", "sapling", "palm", "plant", "flower", "bush", "sakura"),
    "orb": ("orb", "sphere", "ball", "moon", "planet", "bubble", "globe", "egg", "pearl", "sun", "lantern", "lamp", "jellyfish"),
    "house": ("house", "cabin", "cottage", "hut", "home", "shop", "barn", "village", "shack", "tavern", "inn", "chalet"),
    "mountain": ("mountain", "mountains", "volcano", "hill", "hills", "pyramid", "peak", "cliff", "rock", "iceberg"),
    "crystal": ("crystal", "crystals", "gem", "gems", "diamond", "shard", "shards", "quartz", "jewel", "prism", "geode"),
    "creature": ("cat", "dog", "fox", "owl", "bird", "dragon", "robot", "bear", "rabbit", "bunny", "animal", "creature",
                 "monster", "character", "person", "wolf", "kitten", "puppy", "mouse", "deer", "frog", "penguin",
                 "knight", "wizard", "girl", "boy", "man", "woman", "golem", "turtle", "lion", "tiger", "horse"),
    "mushroom": ("mushroom", "mushrooms", "toadstool", "fungus", "fungi", "shroom"),
    "boat": ("boat", "ship", "sailboat", "yacht", "galleon", "canoe", "raft", "submarine", "sail"),
}
SHAPES = tuple(SHAPE_WORDS)

STOPWORDS = {
    "a", "an", "the", "of", "in", "on", "at", "by", "with", "and", "or", "to", "from", "for", "into", "over", "under",
    "is", "are", "be", "very", "some", "its", "it", "this", "that", "my", "our", "their", "his", "her", "as", "like",
    "near", "above", "below", "beside", "behind", "inside", "style", "detailed", "highly", "beautiful", "render",
    "rendering", "art", "artwork", "painting", "picture", "image", "photo", "illustration", "concept", "digital",
    "quality", "high", "resolution", "hd", "k", "ultra", "realistic", "cinematic", "lighting", "scene", "view",
}


def _mix(a, b, t):
    return tuple(float(x) + (float(y) - float(x)) * t for x, y in zip(a, b))


def _luma(c) -> float:
    return (0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]) / 255.0


def _hue_shift(c: RGB, dh: float, ds: float = 0.0) -> RGB:
    h, s, v = colorsys.rgb_to_hsv(*(x / 255.0 for x in c))
    r, g, b = colorsys.hsv_to_rgb((h + dh) % 1.0, min(1.0, max(0.0, s + ds)), v)
    return (int(r * 255), int(g * 255), int(b * 255))


@dataclass
class Plan:
    """Everything the prompt decides, before painting."""
    seed: int
    theme: Theme
    subject_colour: tuple
    shape: str
    glow: bool
    mist: bool
    dark: bool
    pastel: bool
    subject_words: tuple[str, ...]


def _digest(*parts: object) -> bytes:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()


def plan_from_prompt(prompt: str, seed: int | None, negative: str | None = None) -> Plan:
    text = " ".join(prompt.lower().split())
    words = re.findall(r"[a-z]+(?:'[a-z]+)?", text)
    banned = set(re.findall(r"[a-z]+", (negative or "").lower()))
    words = [w for w in words if w not in banned]
    if seed is None:
        seed = int.from_bytes(_digest("atelier-sketch-seed", text)[:4], "big")
    seed = int(seed)

    # Mood -> theme: most matches wins, ties go to the word that comes first in the prompt.
    scores: dict[str, tuple[int, int]] = {}
    for theme, keys in MOOD_WORDS.items():
        hits = [i for i, w in enumerate(words) if w in keys]
        if hits:
            scores[theme] = (len(hits), -hits[0])
    if scores:
        theme = THEMES[max(scores, key=lambda k: scores[k])]
    else:
        h = _digest("theme", text)[0]
        theme = THEMES[("day", "dawn", "sunset", "meadow", "forest", "ocean")[h % 6]]
        # a small prompt-derived hue drift so two mood-less prompts rarely share the exact palette
        dh = ((_digest("hue", text)[1] / 255.0) - 0.5) * 0.08
        theme = replace(theme, sky_top=_hue_shift(theme.sky_top, dh), sky_horizon=_hue_shift(theme.sky_horizon, dh),
                        ground_far=_hue_shift(theme.ground_far, dh), ground_near=_hue_shift(theme.ground_near, dh))

    colours = [COLOUR_WORDS[w] for w in words if w in COLOUR_WORDS]
    if colours:
        subject_colour = tuple(np.mean(np.array(colours[:2], dtype=float), axis=0))
        # the named colour also tints the horizon a little, so the whole picture answers to it
        theme = replace(theme, sky_horizon=tuple(int(v) for v in _mix(theme.sky_horizon, colours[0], 0.22)))
    else:
        subject_colour = theme.subject

    ignore = set(COLOUR_WORDS) | STOPWORDS | GLOW_WORDS | MIST_WORDS | DARK_WORDS | PASTEL_WORDS
    for keys in MOOD_WORDS.values():
        ignore |= set(keys)
    subject_words = tuple(w for w in words if w not in ignore and len(w) > 1)

    shape = None
    for w in words:  # the first shape word in the prompt wins (it is usually the subject)
        for name, keys in SHAPE_WORDS.items():
            if w in keys:
                shape = name
                break
        if shape:
            break
    if shape is None:
        key = " ".join(subject_words) or text
        shape = SHAPES[int.from_bytes(_digest("shape", key)[:2], "big") % len(SHAPES)]

    wordset = set(words)
    return Plan(
        seed=seed,
        theme=theme,
        subject_colour=subject_colour,
        shape=shape,
        glow=bool(wordset & GLOW_WORDS) or theme.name == "neon",
        mist=bool(wordset & MIST_WORDS),
        dark=bool(wordset & DARK_WORDS),
        pastel=bool(wordset & PASTEL_WORDS),
        subject_words=subject_words,
    )


class _Pen:
    """Draws shapes into an anti-aliased coverage mask, in subject units: u to the right, v up from the base."""

    def __init__(self, width: int, height: int, cx: float, base_y: float, scale: float, ss: int):
        self.w, self.h, self.cx, self.by, self.s, self.ss = width, height, cx, base_y, scale, ss
        self.img = Image.new("L", (width * ss, height * ss), 0)
        self.draw = ImageDraw.Draw(self.img)

    def p(self, u: float, v: float) -> tuple[float, float]:
        return ((self.cx + u * self.s) * self.ss, (self.by - v * self.s) * self.ss)

    def poly(self, pts, fill=255):
        self.draw.polygon([self.p(u, v) for u, v in pts], fill=fill)

    def ellipse(self, cu, cv, ru, rv, fill=255):
        x0, y0 = self.p(cu - ru, cv + rv)
        x1, y1 = self.p(cu + ru, cv - rv)
        self.draw.ellipse([x0, y0, x1, y1], fill=fill)

    def rect(self, u0, v0, u1, v1, fill=255):
        x0, y0 = self.p(min(u0, u1), max(v0, v1))
        x1, y1 = self.p(max(u0, u1), min(v0, v1))
        self.draw.rectangle([x0, y0, x1, y1], fill=fill)

    def mask(self) -> np.ndarray:
        img = self.img if self.ss == 1 else self.img.resize((self.w, self.h), Image.Resampling.BOX)
        return np.asarray(img, dtype=np.float32) / 255.0


def _draw_subject(shape: str, body: _Pen, detail: _Pen, rng: np.random.Generator) -> float:
    """Draw the subject; returns its height in subject units (for the glow / light)."""
    j = lambda a, b: float(rng.uniform(a, b))  # noqa: E731
    if shape == "tower":
        w, hgt = j(0.28, 0.38), j(1.25, 1.55)
        body.rect(-w, 0, w, hgt)
        body.rect(-w * 1.25, 0, w * 1.25, 0.18)  # plinth
        if rng.random() < 0.5:
            body.poly([(-w * 1.15, hgt), (w * 1.15, hgt), (0, hgt + j(0.45, 0.65))])  # cone roof
        else:
            n = 4
            for i in range(n):  # battlements
                u0 = -w + i * (2 * w / n)
                body.rect(u0, hgt, u0 + w / n, hgt + 0.14)
        for k in range(3):
            v = 0.38 + k * (hgt - 0.45) / 3
            detail.rect(-0.07, v, 0.07, v + 0.17)
        detail.rect(-0.1, 0.0, 0.1, 0.24)
        return hgt + 0.5
    if shape == "tree":
        tw = j(0.09, 0.13)
        body.poly([(-tw * 1.6, 0), (tw * 1.6, 0), (tw, 0.55), (-tw, 0.55)])
        cy = j(0.95, 1.1)
        body.ellipse(0, cy, j(0.58, 0.7), j(0.48, 0.56))
        body.ellipse(-0.42, cy - 0.1, j(0.34, 0.42), j(0.3, 0.36))
        body.ellipse(0.42, cy - 0.05, j(0.34, 0.42), j(0.3, 0.36))
        body.ellipse(j(-0.1, 0.1), cy + 0.4, j(0.38, 0.46), j(0.3, 0.36))
        for _ in range(7):
            detail.ellipse(j(-0.6, 0.6), cy + j(-0.3, 0.55), 0.05, 0.05)
        return cy + 0.8
    if shape == "orb":
        r = j(0.55, 0.68)
        cy = r + j(0.25, 0.4)
        body.ellipse(0, cy, r, r)
        body.poly([(-0.28, 0), (0.28, 0), (0.14, 0.22), (-0.14, 0.22)])  # pedestal
        body.rect(-0.05, 0.2, 0.05, cy - r + 0.05)
        detail.ellipse(-r * 0.35, cy + r * 0.35, r * 0.22, r * 0.16)  # specular window
        if rng.random() < 0.5:  # a ring
            detail.ellipse(0, cy, r * 1.0, r * 0.12)
            detail.ellipse(0, cy, r * 0.9, r * 0.06, fill=0)
        return cy + r
    if shape == "house":
        w, hgt = j(0.58, 0.7), j(0.6, 0.75)
        body.rect(-w, 0, w, hgt)
        body.poly([(-w * 1.18, hgt), (w * 1.18, hgt), (0, hgt + j(0.5, 0.7))])
        body.rect(w * 0.45, hgt + 0.1, w * 0.65, hgt + 0.55)  # chimney
        detail.rect(-0.12, 0, 0.12, 0.38)  # door
        detail.rect(-w * 0.75, 0.3, -w * 0.4, 0.5)
        detail.rect(w * 0.4, 0.3, w * 0.75, 0.5)
        return hgt + 0.7
    if shape == "mountain":
        w, hgt = j(1.0, 1.25), j(1.1, 1.35)
        off = j(-0.15, 0.15)
        body.poly([(-w, 0), (w, 0), (off + 0.25, hgt * 0.72), (off, hgt), (off - 0.3, hgt * 0.78)])
        detail.poly([(off - 0.22, hgt * 0.8), (off, hgt), (off + 0.2, hgt * 0.78), (off + 0.05, hgt * 0.7), (off - 0.08, hgt * 0.76)])
        return hgt
    if shape == "crystal":
        def prism(cu, width, top, tilt):
            body.poly([(cu - width, 0), (cu + width, 0), (cu + width + tilt, top * 0.8), (cu + tilt, top), (cu - width + tilt, top * 0.8)])
            detail.poly([(cu + tilt * 0.5, 0.05), (cu + width * 0.6 + tilt, top * 0.78), (cu + tilt, top * 0.96)])
        prism(0, j(0.2, 0.26), j(1.3, 1.6), j(-0.05, 0.05))
        prism(-0.3, j(0.14, 0.18), j(0.7, 0.95), j(-0.22, -0.12))  # side prisms overlap the big one's foot
        prism(0.3, j(0.14, 0.18), j(0.75, 1.0), j(0.12, 0.22))
        return 1.6
    if shape == "creature":
        bw, bh = j(0.5, 0.6), j(0.42, 0.5)
        body.ellipse(0, bh, bw, bh)  # body
        hr = j(0.3, 0.36)
        hu = j(-0.12, 0.12)
        hv = bh * 2 + hr * 0.55
        body.ellipse(hu, hv, hr, hr)  # head
        body.poly([(hu - hr * 0.85, hv + hr * 0.3), (hu - hr * 0.35, hv + hr * 0.8), (hu - hr * 0.6, hv + hr * 1.45)])  # ears
        body.poly([(hu + hr * 0.85, hv + hr * 0.3), (hu + hr * 0.35, hv + hr * 0.8), (hu + hr * 0.6, hv + hr * 1.45)])
        body.poly([(bw * 0.8, bh * 0.6), (bw * 1.45, bh * 1.5), (bw * 1.3, bh * 1.6), (bw * 0.7, bh * 0.9)])  # tail
        body.rect(-bw * 0.6, 0, -bw * 0.3, bh * 0.5)  # feet
        body.rect(bw * 0.3, 0, bw * 0.6, bh * 0.5)
        detail.ellipse(hu - hr * 0.38, hv + hr * 0.1, hr * 0.13, hr * 0.17)  # eyes
        detail.ellipse(hu + hr * 0.38, hv + hr * 0.1, hr * 0.13, hr * 0.17)
        return hv + hr * 1.5
    if shape == "mushroom":
        sw = j(0.16, 0.22)
        sh = j(0.55, 0.7)
        body.poly([(-sw * 1.3, 0), (sw * 1.3, 0), (sw, sh), (-sw, sh)])
        cw, ch = j(0.7, 0.85), j(0.5, 0.62)
        x0, y0 = body.p(-cw, sh + ch)
        x1, y1 = body.p(cw, sh - ch)
        body.draw.pieslice([x0, y0, x1, y1], 180, 360, fill=255)
        body.ellipse(0, sh, cw, 0.08)
        for _ in range(5):
            a = j(0.15, 2.95)
            rad = j(0.3, 0.75)
            detail.ellipse(np.cos(a) * cw * rad, sh + np.sin(a) * ch * rad, 0.08, 0.07)
        return sh + ch
    # boat
    hw = j(0.75, 0.9)
    body.poly([(-hw, 0.32), (hw, 0.32), (hw * 0.7, 0), (-hw * 0.7, 0)])
    body.rect(-0.05, 0.3, 0.05, j(1.35, 1.55))
    body.poly([(0.04, 0.4), (0.04, 1.4), (hw * 0.85, 0.4)])  # sails hang on the mast: one connected silhouette
    body.poly([(-0.04, 0.45), (-0.04, 1.2), (-hw * 0.6, 0.45)])
    detail.rect(-hw * 0.7, 0.1, hw * 0.7, 0.16)
    return 1.5


def _font(size: int):
    for name in ("DejaVuSans-Bold.ttf", "DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
                 "LiberationSans-Bold.ttf", "Arial.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # very old Pillow: fixed-size bitmap font
        return ImageFont.load_default()


def _fit_caption(draw: ImageDraw.ImageDraw, width: int, size: int, margin: int):
    """The largest caption (full text first, then just "SKETCH") that fits the picture's width."""
    for text in (CAPTION, "SKETCH"):
        for s in range(size, 5, -1):
            font = _font(s)
            try:
                box = draw.textbbox((0, 0), text, font=font)
            except UnicodeEncodeError:  # a bitmap font without "·"
                break
            if box[2] - box[0] + 4 * margin <= width:
                return text, font, box, s
    font = _font(6)
    return "SKETCH", font, draw.textbbox((0, 0), "SKETCH", font=font), 6


def _caption(img: Image.Image) -> None:
    """Draw the "SKETCH · no image model" label in the bottom-left corner, shrinking it to fit."""
    w, h = img.size
    margin = max(2, min(w, h) // 64)
    overlay = Image.new("RGBA", img.size, (0, 0, 0, 0))
    d = ImageDraw.Draw(overlay)
    text, font, (x0, y0, x1, y1), s = _fit_caption(d, w, max(9, min(w, h) // 30), margin)
    pad = max(2, s // 3)
    box = (margin, h - margin - (y1 - y0) - 2 * pad, margin + (x1 - x0) + 2 * pad, h - margin)
    d.rounded_rectangle(box, radius=pad, fill=(12, 12, 18, 150))
    d.text((box[0] + pad - x0, box[1] + pad - y0), text, font=font, fill=(255, 255, 255, 235))
    img.paste(Image.alpha_composite(img.convert("RGBA"), overlay).convert("RGB"))


def render_sketch(prompt: str, width: int = 512, height: int = 512, seed: int | None = None,
                  negative_prompt: str | None = None, progress: ProgressFn = no_progress) -> tuple[Image.Image, Plan]:
    plan = plan_from_prompt(prompt, seed, negative_prompt)
    t = plan.theme
    rng = np.random.default_rng(int.from_bytes(_digest("atelier-sketch", " ".join(prompt.lower().split()), plan.seed)[:8], "big"))
    W, H = width, height
    m = float(min(W, H))
    progress(0.15, f"sketch: {t.name} palette, {plan.shape} subject")

    def arr(c):
        return np.asarray(c, dtype=np.float32).reshape(1, 1, 3) / 255.0

    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    horizon = H * float(rng.uniform(0.58, 0.66))

    # --- sky: gradient top -> horizon (eased), then the light source and its glow
    ty = np.clip(yy / horizon, 0, 1)[..., None] ** 1.6
    img = arr(t.sky_top) * (1 - ty) + arr(t.sky_horizon) * ty
    side = -1 if rng.random() < 0.5 else 1
    lx = W * (0.5 + side * float(rng.uniform(0.2, 0.32)))
    ly = horizon - (horizon * 0.92) * t.light_height * float(rng.uniform(0.85, 1.1))
    d = np.hypot(xx - lx, yy - ly) / m
    if t.stars:
        n = int(W * H / 900)
        sx, sy = rng.uniform(0, W, n), rng.uniform(0, horizon * 0.95, n)
        bright = rng.uniform(0.35, 1.0, n)
        star = np.zeros((H, W), np.float32)
        star[sy.astype(int), np.clip(sx.astype(int), 0, W - 1)] = bright
        star_img = Image.fromarray((star * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.6))
        img = img + (np.asarray(star_img, np.float32) / 255.0 * 2.2)[..., None] * arr((255, 250, 235))
    # bright skies need little glow (it would wash them out); dark skies get a generous one
    glow_strength = (0.6 if t.light_kind != "none" else 0.2) * float(np.clip(1.15 - _luma(t.sky_horizon), 0.2, 1.0))
    glow = np.exp(-(d / 0.28) ** 2) * glow_strength + np.exp(-(d / 0.9) ** 2) * 0.12
    img = img + glow[..., None] * arr(t.light) * (yy < horizon + 0.02 * H)[..., None]
    if t.light_kind != "none":
        r = m * (0.07 if t.light_kind == "sun" else 0.055)
        disc = np.clip((r - np.hypot(xx - lx, yy - ly)) / 1.5 + 0.5, 0, 1)
        disc *= (yy < horizon)  # the sun sinks behind the horizon
        img = img * (1 - disc[..., None]) + arr(_mix(t.light, (255, 255, 255), 0.35)) * disc[..., None]
    progress(0.35, "sketch: sky and ground")

    # --- distant hills (two ridge lines, lighter and hazier further away) and the ground
    def ridge(base, amp, freq):
        ph = rng.uniform(0, 2 * np.pi, 3)
        x = np.arange(W, dtype=np.float32) / W
        return base - amp * H * (0.55 * np.sin(2 * np.pi * freq * x + ph[0]) + 0.3 * np.sin(2 * np.pi * freq * 2.3 * x + ph[1])
                                 + 0.15 * np.sin(2 * np.pi * freq * 5.1 * x + ph[2]) + 0.6)

    far_col = _mix(t.sky_horizon, t.ground_far, 0.45)
    near_col = _mix(t.sky_horizon, t.ground_far, 0.75)
    for line, col in ((ridge(horizon, 0.09, float(rng.uniform(0.8, 1.6))), far_col),
                      (ridge(horizon + 0.015 * H, 0.05, float(rng.uniform(1.5, 2.6))), near_col)):
        cover = np.clip(yy - line[None, :] + 0.5, 0, 1)[..., None]
        img = img * (1 - cover) + arr(col) * cover
    ground_t = np.clip((yy - horizon) / max(1.0, H - horizon), 0, 1)[..., None]
    ground = arr(t.ground_far) * (1 - ground_t) + arr(t.ground_near) * ground_t
    below = np.clip(yy - horizon - 0.5, 0, 1)[..., None]
    img = img * (1 - below) + ground * below
    if t.grid:  # neon perspective grid
        gy = np.clip((yy - horizon) / max(1.0, H - horizon), 1e-3, 1)
        lines_h = np.abs(np.sin(np.pi * 6 / gy)) < 0.06 + 0.1 * gy
        lines_v = np.abs(np.sin(np.pi * ((xx - W / 2) / (W * 0.08)) / gy)) < 0.07 + 0.1 * gy
        gl = ((lines_h | lines_v) & (yy > horizon + 1)).astype(np.float32) * (0.25 + 0.6 * gy)
        img = img + gl[..., None] * arr(t.light) * 0.7
    else:  # soft strokes that give the ground some texture
        strokes = Image.new("L", (W, H), 0)
        sd = ImageDraw.Draw(strokes)
        for _ in range(int(28 * W / 512) + 6):
            y = float(rng.uniform(horizon + 0.03 * H, H))
            x = float(rng.uniform(0, W))
            ln = float(rng.uniform(0.04, 0.14)) * W * (0.4 + (y - horizon) / (H - horizon))
            sd.line([(x, y), (x + ln, y + rng.uniform(-2, 2))], fill=int(rng.uniform(60, 140)), width=max(1, int(m / 200)))
        st = np.asarray(strokes.filter(ImageFilter.GaussianBlur(max(0.6, m / 400))), np.float32)[..., None] / 255.0
        img = img * (1 - 0.18 * st)

    # --- the subject: a light, softly shaded silhouette in front, with a contact shadow
    progress(0.55, f"sketch: drawing the {plan.shape}")
    scale = m * float(rng.uniform(0.24, 0.29))
    cx = W * (0.5 + float(rng.uniform(-0.05, 0.05)))
    base_y = horizon + (H - horizon) * float(rng.uniform(0.55, 0.7))
    ss = 3 if m <= 768 else 2
    body, detail = _Pen(W, H, cx, base_y, scale, ss), _Pen(W, H, cx, base_y, scale, ss)
    top_units = _draw_subject(plan.shape, body, detail, rng)
    mask = body.mask()
    det = detail.mask() * mask

    shadow = Image.new("L", (W, H), 0)
    ImageDraw.Draw(shadow).ellipse([cx - scale * 1.25, base_y - scale * 0.12, cx + scale * 1.25 + side * -scale * 0.4, base_y + scale * 0.16], fill=170)
    sh = np.asarray(shadow.filter(ImageFilter.GaussianBlur(max(1.0, scale * 0.1))), np.float32)[..., None] / 255.0
    img = img * (1 - 0.55 * sh)

    subj = np.asarray(plan.subject_colour, np.float32) / 255.0
    lift = 0.42 if _luma(plan.subject_colour) < 0.55 else 0.22  # keep the subject light: a clear foreground
    if plan.dark:
        lift *= 0.6
    subj = subj + (1 - subj) * lift
    # soft light from the light source's side, brighter towards the top, plus a rim on the lit edge
    ux = (xx - cx) / scale
    vy = (base_y - yy) / (scale * max(top_units, 0.5))
    shade = 0.8 + 0.16 * np.clip(ux * side, -1.2, 1.2) + 0.12 * np.clip(vy, 0, 1.2)
    inner = np.asarray(Image.fromarray((mask * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(max(1.0, scale * 0.06))), np.float32) / 255.0
    rim = np.clip(mask - inner, 0, 1) * np.clip(0.4 + ux * side, 0, 1) * 1.6
    col = subj.reshape(1, 1, 3) * shade[..., None] + rim[..., None] * arr(t.light) * 0.5
    det_col = arr(_mix(t.light, (255, 240, 190), 0.3)) * 1.05 if plan.glow else subj.reshape(1, 1, 3) * 0.55
    col = col * (1 - det[..., None]) + det_col * det[..., None]
    outline = np.clip(mask - np.asarray(Image.fromarray((mask * 255).astype(np.uint8)).filter(ImageFilter.MinFilter(3)), np.float32) / 255.0, 0, 1)
    col = col * (1 - 0.45 * outline[..., None])
    img = img * (1 - mask[..., None]) + col * mask[..., None]

    if plan.glow:  # a halo and a few sparks around the subject
        halo = np.asarray(Image.fromarray((mask * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(max(2.0, scale * 0.18))), np.float32) / 255.0
        img = img + (halo * (1 - mask))[..., None] * arr(t.light) * 0.55
        img = img + (det * 0.25)[..., None]
        sparks = Image.new("L", (W, H), 0)
        spd = ImageDraw.Draw(sparks)
        for _ in range(14):
            px = cx + float(rng.uniform(-1.6, 1.6)) * scale
            py = base_y - float(rng.uniform(0.1, top_units + 0.4)) * scale
            rr = max(1.0, m * float(rng.uniform(0.003, 0.008)))
            spd.ellipse([px - rr, py - rr, px + rr, py + rr], fill=255)
        sp = np.asarray(sparks.filter(ImageFilter.GaussianBlur(max(0.8, m / 300))), np.float32)[..., None] / 255.0
        img = img + sp * arr(t.light) * 0.9

    # --- mood adjustments, vignette and a whisper of grain
    if plan.mist:
        haze = np.exp(-((yy - horizon) / (0.22 * H)) ** 2)[..., None] * 0.45
        img = img * (1 - haze) + arr(_mix(t.sky_horizon, (235, 235, 240), 0.5)) * haze
    if plan.pastel:
        img = img * 0.75 + 0.25
    if plan.dark:
        img = img * 0.72
    vig = 1 - 0.22 * np.clip((np.hypot((xx - W / 2) / (W / 2), (yy - H / 2) / (H / 2)) - 0.6) / 0.8, 0, 1) ** 1.5
    img = img * vig[..., None]
    img = img + rng.normal(0, 0.008, size=(H, W, 1)).astype(np.float32)
    out = Image.fromarray((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8), "RGB")
    progress(0.8, "sketch: caption")
    _caption(out)
    return out, plan


class SketchBackend(Backend):
    """Text -> image without any model: a labelled, deterministic sketch of the prompt."""

    name: ClassVar[str] = "sketch"
    kind: ClassVar[Literal["image"]] = "image"
    label: ClassVar[str] = "the local sketch backend"
    supports_size: ClassVar[bool] = True
    supports_seed: ClassVar[bool] = True
    supports_negative_prompt: ClassVar[bool] = True  # its words are left out of the picture
    learned: ClassVar[bool] = False  # procedural: a placeholder that works offline with no model

    def __init__(self, kind: str = "image"):
        self._kind = kind

    def generate(self, request: ImageRequest, progress: ProgressFn = no_progress) -> list[GeneratedAsset]:
        prompt = (request.prompt or "").strip()
        if not prompt:
            raise BackendError("sketch needs a non-empty prompt", transient=False, backend=self.name)
        for label, value in (("width", request.width), ("height", request.height)):
            if not isinstance(value, int) or isinstance(value, bool) or not MIN_SIZE <= value <= MAX_SIZE:
                raise BackendError(f"{label} must be an integer between {MIN_SIZE} and {MAX_SIZE}, got {value!r}",
                                   transient=False, backend=self.name)
        if request.seed is not None and not isinstance(request.seed, int):
            raise BackendError(f"seed must be an integer, got {request.seed!r}", transient=False, backend=self.name)
        progress(0.02, "sketch: reading the prompt (no image model, drawing a sketch)")
        image, plan = render_sketch(prompt, request.width, request.height, request.seed, request.negative_prompt, progress)
        info = PngInfo()
        info.add_text("Software", GENERATOR)
        info.add_text("Description", f"{CAPTION}: a procedural sketch, not a model output")
        info.add_text("atelier:is_sketch", "true")
        info.add_text("atelier:seed", str(plan.seed))
        buf = io.BytesIO()
        image.save(buf, format="PNG", pnginfo=info, optimize=False, compress_level=6)
        progress(1.0, "sketch ready")
        return [GeneratedAsset(
            kind="image",
            data=buf.getvalue(),
            mime="image/png",
            backend=self.name,
            metadata={
                "is_sketch": True,
                "seed": plan.seed,
                "generator": GENERATOR,
                "width": request.width,
                "height": request.height,
                "palette": plan.theme.name,
                "subject_shape": plan.shape,
                "note": "procedural sketch; no image model was used",
            },
        )]


def register_backends(register) -> None:
    register(SketchBackend)
