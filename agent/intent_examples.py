"""Labelled examples the intent router compares a request against (by MiniLM embedding).

Requests with explicit cues (past references, "no 3d", "make it 3d", "improve this prompt") are routed
by rules in router.py; the embedding step separates what remains: a new idea to make, or chit-chat.
These are the router's training data. The evaluation set is tests/support/data/decisions.jsonl, written
separately, with other phrasings: accuracy is never measured on these examples.
"""

# intent -> the tools it needs, in order (the graph drops enhance_prompt / image_to_3d when configured off)
PLANS: dict[str, list[str]] = {
    "create": ["enhance_prompt", "text_to_image", "image_to_3d"],
    "image": ["enhance_prompt", "text_to_image"],
    "to_3d": ["image_to_3d"],
    "recall": ["recall_similar"],
    "remix": ["recall_similar", "enhance_prompt", "text_to_image", "image_to_3d"],
    "enhance": ["enhance_prompt"],
    "chat": [],
}

EXAMPLES: dict[str, list[str]] = {
    "create": [
        "a glowing dragon standing on a cliff at sunset",
        "a wooden treasure chest covered in moss",
        "an astronaut riding a horse on mars",
        "make me a medieval castle on a hill",
        "create a cute robot with big eyes",
        "I want a crystal sword",
        "generate a steampunk airship",
        "a cozy cabin in a snowy forest",
        "design a sci-fi helmet",
        "build me a fantasy mushroom house",
        "a golden phoenix rising from flames",
        "can you make a small green frog sitting on a leaf",
        "draw a vintage car and make a 3d model of it",
        "a marble statue of a lion",
        "sculpt an ancient stone idol",
        "an owl made of brass gears",
        "a pirate ship sailing through clouds",
        "let's make a futuristic motorcycle",
        "a ceramic teapot shaped like a whale",
        "give me a low poly tree",
        "I'd like a knight in shining armor",
        "a floating island with waterfalls",
        "a red apple on a table",
        "turn this idea into a model: a dancing skeleton",
    ],
    "chat": [
        "hi",
        "hello there",
        "thanks!",
        "thank you, that's great",
        "what can you do?",
        "how does this work",
        "who are you",
        "good morning",
        "bye",
        "ok cool",
        "help",
        "what tools do you have",
        "are you there?",
        "nice work",
        "how are you today",
        "what is a glb file",
    ],
}
