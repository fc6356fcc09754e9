"""The prompts enhance_prompt shows the LLM (the decision and reply prompts are agent/prompts.py).
Short: the embedded model has 135M parameters."""

ENHANCE_SYSTEM = """You write prompts for an image generator. Given an idea, describe only that idea: details of its
own subject (parts, materials, colours, texture), style, lighting and composition. Never add another animal, person,
vehicle or object. Never ask questions, never talk about yourself. Short phrases only. Answer with JSON only."""

# A pool of worked examples; enhance_prompt shows the model only the nearest one to the idea (by meaning),
# and none when nothing is near. Every phrase appears once in the pool, so a copied phrase is recognisable:
# the rubric (tools/enhance.py) rejects additions copied from the example shown, and
# benchmarks/enhance_rubric.py reports how often any pool phrase shows up at all (target 0 %).
ENHANCE_EXAMPLES = [
    ("a cat on a windowsill", {"details": "fluffy fur, rain drops on the glass", "style": "cozy watercolor illustration",
                               "lighting": "soft morning light", "composition": "close-up, shallow depth of field"}),
    ("a futuristic city", {"details": "neon signs, glass towers, layered skyways", "style": "cinematic concept art",
                           "lighting": "blue hour glow", "composition": "wide aerial view"}),
    ("an old lighthouse in a storm", {"details": "crashing waves, dark clouds, spray", "style": "dramatic oil painting",
                                      "lighting": "lightning flash, sweeping beacon beam", "composition": "low angle, rule of thirds"}),
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
