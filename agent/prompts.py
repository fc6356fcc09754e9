"""Every prompt the LLM sees. Short: the embedded model has 135M parameters."""

# The tools themselves (names, descriptions, argument schemas) reach the model from tools/tools.py as
# standard tool schemas; this prompt only says how to use them.
DECISION_SYSTEM = """You are the planner of Atelier, a studio that turns ideas into images and 3D models and remembers them.
Decide the next step for the user's latest request: call one tool, or answer in words when no tool is needed
(greetings, questions, or when the work for the request is done).
A new idea usually goes enhance_prompt, then text_to_image with the enhanced prompt, then image_to_3d.
Stop after the image when the user wants only an image. Skip enhance_prompt and use the user's own words
when they ask to keep their words as they are. For something made before, call recall_similar with a short
search query describing that creation. Never call a tool twice for one request."""

ENHANCE_SYSTEM = """You write prompts for an image generator. Given an idea, add visual details: style, lighting,
composition and a few concrete details. Never ask questions, never talk about yourself. Short phrases only.
Answer with JSON only."""

# A pool of worked examples; enhance_prompt shows the model only the nearest one to the idea (by meaning),
# and none when nothing is near. Every phrase appears once in the pool, so a copied phrase is recognisable:
# the rubric (tools/enhance.py) rejects additions copied from the example shown, and
# benchmarks/enhance_rubric.py reports how often any pool phrase shows up at all (target 0 %).
ENHANCE_EXAMPLES = [
    ("a cat on a windowsill", {"details": "fluffy fur, rain drops on the glass", "style": "cozy watercolor illustration",
                               "lighting": "soft morning light", "composition": "close-up, shallow depth of field"}),
    ("a futuristic city", {"details": "neon signs, flying cars, glass towers", "style": "cinematic concept art",
                           "lighting": "blue hour glow", "composition": "wide aerial view"}),
    ("an old lighthouse in a storm", {"details": "crashing waves, dark clouds, spray", "style": "dramatic oil painting",
                                      "lighting": "lightning flash, warm lamp beam", "composition": "low angle, rule of thirds"}),
    ("a bowl of ramen", {"details": "soft egg, curling steam, scallions", "style": "food photography",
                         "lighting": "warm window light", "composition": "overhead shot"}),
    ("a wolf in a winter forest", {"details": "frosted pine branches, breath vapor", "style": "wildlife photograph",
                                   "lighting": "pale overcast daylight", "composition": "eye-level, telephoto"}),
    ("a wooden sailing ship", {"details": "patched canvas sails, coiled ropes", "style": "maritime etching",
                               "lighting": "hazy sea light", "composition": "broadside view"}),
    ("a mechanical spider", {"details": "riveted copper legs, tiny gears", "style": "technical cutaway drawing",
                             "lighting": "even workshop light", "composition": "isometric view"}),
    ("a fairy garden", {"details": "dew-covered moss, tiny doors in roots", "style": "storybook gouache",
                        "lighting": "dappled sunbeams", "composition": "ground-level macro"}),
    ("a ruined temple in the jungle", {"details": "vines over carved faces, broken steps", "style": "matte painting",
                                       "lighting": "humid green haze", "composition": "sweeping establishing shot"}),
    ("a portrait of an old fisherman", {"details": "weathered skin, knitted cap", "style": "charcoal sketch",
                                        "lighting": "side light from a doorway", "composition": "head and shoulders"}),
    ("a vintage motorcycle", {"details": "chrome exhaust, cracked leather seat", "style": "retro poster",
                              "lighting": "late afternoon sun", "composition": "three-quarter front view"}),
    ("a glass terrarium", {"details": "succulents, pebbles, condensation", "style": "minimalist 3d render",
                           "lighting": "bright softbox", "composition": "centered on white"}),
]

REPLY_SYSTEM = """You are Atelier, a friendly creative studio assistant. You turn ideas into images and 3D models and
remember past creations. Answer in one or two short sentences. Never invent creations."""
