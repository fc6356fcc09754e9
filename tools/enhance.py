"""enhance_prompt: idea -> one image prompt that keeps the idea's words, in order, and fits CLIP's 77 tokens.

The model does not rewrite the idea (a 135M model drops words and chats); it fills a JSON schema of
additions — details of the idea, style, lighting, composition — which are sanitised and appended to the idea.
The additions describe the idea's own subject and its scene, never a new one: the schema's first field is
named after the idea ("details of a red kite over a green hill"), so the grammar makes the model write that
key before its details, and an addition naming a creature, person, vehicle or object the idea does not have
(tools/subjects.py) is dropped where the additions are chosen (assemble); the rubric rejects one too.
It is shown one worked example, the nearest to the idea by meaning from a pool (tools/prompts.py), because
a small model copies what it is shown: the rubric rejects additions copied from the example shown and
phrases already used for an unrelated recent idea. A failing result is retried with the next-nearest
example and another seed, then repaired with keyword-chosen additions that vary by idea, so the tool never
returns chatter.
"""
from __future__ import annotations

import json
import logging
import re
import threading
import zlib
from collections import deque
from dataclasses import dataclass, field

from models.llm import ChatLLM, LLMError, parse_json
from tools.prompts import ENHANCE_EXAMPLES, ENHANCE_SYSTEM

from .clip_tokens import CLIP_CONTEXT, count_tokens, truncate_phrases
from .subjects import new_subjects

log = logging.getLogger("atelier.enhance")

PARTS = ("details", "style", "lighting", "composition")
FIELD_LENGTH = 70
ENHANCE_SCHEMA = {
    "type": "object",
    "properties": {part: {"type": "string", "maxLength": FIELD_LENGTH} for part in PARTS},
    "required": list(PARTS),
}


def details_key(idea: str) -> str:
    """The schema's details field, named after the idea (its first words, up to 60 characters)."""
    words, key = idea.split(), "details of"
    for word in words:
        if len(key) + 1 + len(word) > 60:
            break
        key += " " + word
    return key


def schema_for(idea: str) -> dict:
    """ENHANCE_SCHEMA with the details field named after the idea: the grammar writes "details of <idea>" and
    the model continues with details *of* it (its parts, materials, colours), not of something else."""
    keys = (details_key(idea), *PARTS[1:])
    return {"type": "object", "properties": {k: {"type": "string", "maxLength": FIELD_LENGTH} for k in keys}, "required": list(keys)}


def as_parts(answer: dict) -> dict:
    """The model's answer by part name (its details field is named after the idea)."""
    details = next((v for k, v in answer.items() if str(k).startswith("details")), "")
    return {"details": details, **{part: answer.get(part, "") for part in PARTS[1:]}}
STOPWORDS = set(
    """a an the and or of on in at to for with from by as is are be it its this that these those into onto over under
    up down out off very so too some any all my your our me i we you he she they them please make create generate draw
    paint render design build give show want would like could can will just now then also""".split()
)
CHATTER = re.compile(
    r"\b(i'?m|i am|i'?d|i will|i'll|i can|i think|i hope|i love|me|my|sure|certainly|of course|here is|here's|happy to|glad|"
    r"thrilled|excited|hope you|let me|as an ai|assistant|sorry|thank|hello|hi there|you)\b|!|\?",
    re.I,
)
# Keyword -> fallback additions (style, lighting, composition choices), used only when the model's additions
# fail the rubric twice; one of each is picked per idea so repaired prompts do not all read the same.
FALLBACK_STYLES = [
    (r"dragon|castle|knight|wizard|elf|sword|fantasy|phoenix|myth|viking|samurai",
     [["epic fantasy concept art", "illuminated manuscript style", "heroic oil illustration"],
      ["dramatic rim lighting", "torchlit glow", "stormy backlight"], ["highly detailed, wide shot", "low heroic angle", "panoramic framing"]]),
    (r"robot|space|cyber|futur|sci-?fi|astronaut|neon|mech|clockwork|automaton",
     [["sleek sci-fi concept art", "retro-futurist poster", "hard-surface 3d render"],
      ["cinematic neon glow", "cool rim light", "starlit ambience"], ["sharp focus, centered composition", "dynamic diagonal framing", "orthographic view"]]),
    (r"cat|dog|fox|owl|bird|frog|animal|lion|horse|whale|leopard|puppy|koi|hummingbird|jellyfish",
     [["charming wildlife illustration", "naturalist field sketch", "soft pastel drawing"],
      ["soft natural light", "warm afternoon glow", "gentle backlight"], ["tight portrait, soft bokeh", "eye-level portrait", "full body profile"]]),
    (r"forest|mountain|lake|ocean|sea|landscape|island|desert|river|cave|reef|garden",
     [["sweeping landscape painting", "luminous plein-air study", "atmospheric digital matte"],
      ["golden hour light", "misty dawn light", "moonlit shimmer"], ["wide angle, balanced horizon", "distant vantage point", "layered foreground and depth"]]),
    (r"", [["highly detailed digital art", "clean product illustration", "textured gouache painting", "ink and wash drawing",
            "vivid pop art print", "muted editorial illustration"],
           ["soft studio lighting", "warm ambient light", "crisp daylight", "candlelit warmth", "cool moonlight", "hazy dusk light"],
           ["centered, plain backdrop", "three-quarter view", "tight crop", "low vantage point", "symmetrical framing", "off-center subject"]]),
]
# Recent accepted additions (idea, phrases): a phrase reused for an unrelated idea is a copy, not a choice.
RECENT: deque[tuple[str, list[str]]] = deque(maxlen=32)
_recent_lock = threading.Lock()


@dataclass
class EnhanceResult:
    prompt: str
    source: str  # "llm" | "llm-retry" | "repaired"
    attempts: int
    problems: list[str] = field(default_factory=list)  # what failed before the returned prompt
    dropped: list[str] = field(default_factory=list)  # the model's additions that named a subject the idea lacks


def content_words(text: str) -> list[str]:
    words = re.findall(r"[a-z0-9][a-z0-9'-]*", text.lower())
    return [w for w in words if w not in STOPWORDS and len(w) > 1]


def _norm(phrase: str) -> str:
    return re.sub(r"^(a|an|the)\s+", "", re.sub(r"\s+", " ", phrase.lower()).strip(" .;:-\"'"))


def additions_of(idea: str, prompt: str) -> list[str]:
    """The phrases enhance_prompt appended to the idea."""
    rest = prompt[len(idea):] if prompt.lower().startswith(idea.lower()) else ",".join(prompt.split(",")[1:])
    return [p for p in (_norm(x) for x in rest.split(",")) if p]


def example_phrases(examples) -> list[str]:
    return [p for _, answer in examples for part in PARTS for p in (_norm(x) for x in re.split(r"[,;]", answer.get(part, ""))) if p]


def _trigrams(phrase: str) -> set[tuple[str, ...]]:
    words = phrase.split()
    return {tuple(words[i:i + 3]) for i in range(len(words) - 2)}


def copied_phrases(additions: list[str], examples) -> list[str]:
    """Additions that repeat an example's phrase, whole or in a run of three words."""
    shown = example_phrases(examples)
    whole = set(shown)
    runs = set().union(*(_trigrams(p) for p in shown)) if shown else set()
    return [a for a in additions if a in whole or _trigrams(a) & runs]


def unrelated(idea: str, other: str) -> bool:
    return not set(content_words(idea)) & set(content_words(other))


def repeated_phrases(idea: str, additions: list[str], recent) -> list[str]:
    """Additions already used, word for word, for an unrelated idea (one sharing no content word)."""
    used = {p for other, phrases in recent if unrelated(idea, other) for p in phrases}
    return [a for a in additions if a in used]


def rubric(idea: str, prompt: str, examples=(), recent=()) -> list[str]:
    """Empty list = passes. Checks the properties the issue asks of an enhanced prompt; `examples` are the
    worked examples the model was shown, `recent` the (idea, additions) pairs made before it."""
    problems = []
    have = set(re.findall(r"[a-z0-9][a-z0-9'-]*", prompt.lower()))
    missing = [w for w in content_words(idea) if w not in have]
    if missing:
        problems.append(f"drops idea words: {', '.join(missing[:5])}")
    elif not keeps_order(idea, prompt):
        problems.append("does not keep the idea's words in order")
    tokens = count_tokens(prompt)
    if tokens > CLIP_CONTEXT:
        problems.append(f"{tokens} CLIP tokens (limit {CLIP_CONTEXT})")
    if CHATTER.search(prompt):
        problems.append("contains chatter or a question")
    added = set(content_words(prompt)) - set(content_words(idea))
    if len(added) < 3:
        problems.append("adds fewer than 3 descriptive words")
    phrases = [p.strip().lower() for p in prompt.split(",")[1:] if p.strip()]
    if len(phrases) != len(set(phrases)):
        problems.append("repeats a phrase")
    additions = additions_of(idea, prompt)
    if drift := new_subjects(idea, ", ".join(additions)):
        problems.append(f"adds a subject the idea does not have: {', '.join(drift[:3])}")
    if copied := copied_phrases(additions, examples):
        problems.append(f"copies the example: {', '.join(copied[:3])}")
    if repeated := repeated_phrases(idea, additions, recent):
        problems.append(f"repeats phrases used for an unrelated idea: {', '.join(repeated[:3])}")
    return problems


def keeps_order(idea: str, prompt: str) -> bool:
    """The idea's content words appear in the prompt in the idea's order."""
    words, at = re.findall(r"[a-z0-9][a-z0-9'-]*", prompt.lower()), 0
    for word in content_words(idea):
        try:
            at = words.index(word, at) + 1
        except ValueError:
            return False
    return True


def fit_idea(idea: str, budget: int = 50) -> str:
    """Very long ideas keep their content words, in order, up to the token budget."""
    idea = re.sub(r"\s+", " ", idea).strip(" ,.")
    if count_tokens(idea) <= budget:
        return idea
    return truncate_phrases("", [" ".join(content_words(idea)[:60])], budget) or " ".join(content_words(idea)[:20])


def _clean(phrase: str) -> str | None:
    phrase = re.sub(r"\s+", " ", str(phrase)).strip(" ,.;:-\"'")
    if not phrase or CHATTER.search(phrase) or len(phrase) > 70:
        return None
    return phrase[0].lower() + phrase[1:]


_pool_matrix = None
_pool_lock = threading.Lock()


def nearest_examples(idea: str, k: int = 2) -> list[tuple[str, dict]]:
    """The k pool examples nearest to the idea by meaning (MiniLM cosine), nearest first."""
    global _pool_matrix
    from memory import embeddings

    with _pool_lock:
        if _pool_matrix is None:
            _pool_matrix = embeddings.embed([example for example, _ in ENHANCE_EXAMPLES])
    sims = _pool_matrix @ embeddings.embed([idea])[0]
    order = sorted(range(len(ENHANCE_EXAMPLES)), key=lambda i: -float(sims[i]))
    return [ENHANCE_EXAMPLES[i] for i in order[:k]]


def _ask(llm: ChatLLM, idea: str, seed: int, examples=()) -> dict:
    messages = [{"role": "system", "content": ENHANCE_SYSTEM}]
    for example, answer in examples:
        shown = {details_key(example): answer["details"], **{part: answer[part] for part in PARTS[1:]}}
        messages += [{"role": "user", "content": f"Idea: {example}"}, {"role": "assistant", "content": json.dumps(shown)}]
    messages.append({"role": "user", "content": f"Idea: {idea}"})
    answer = parse_json(llm.chat(messages, max_tokens=180, temperature=0.7 if seed else 0.3, json_schema=schema_for(idea), seed=seed))
    if not isinstance(answer, dict):
        raise ValueError(f"the model's answer is a {type(answer).__name__}, not an object")
    return as_parts(answer)


def assemble(idea: str, additions: dict, dropped: list[str] | None = None) -> str:
    """idea + the model's additions: split into short phrases, without repeats of the idea or each other, and
    without a phrase that names a subject the idea does not have (put in `dropped`, when given)."""
    idea_words = set(content_words(idea))
    phrases: list[str] = []
    seen_words: set[str] = set(idea_words)
    for part in PARTS:
        kept = 0
        text = str(additions.get(part, ""))
        pieces = re.split(r"[,;]", text)
        if len(text) >= FIELD_LENGTH and len(pieces) > 1:
            pieces = pieces[:-1]  # the grammar cut the field short: its last piece is a broken word
        for raw in pieces:
            phrase = _clean(re.sub(r"^(a|an|the)\s+", "", raw.strip(), flags=re.I))
            words = (phrase or "").lower().split()
            new_words = set(content_words(phrase or "")) - seen_words
            if not phrase or not new_words or kept >= 2 or len(words) > 6 or len(set(words)) < len(words):
                continue  # empty, chatter, a sentence, stuttering, or only repeats words we already have
            if new_subjects(idea, phrase):  # a second subject the picture model would draw: not the user's idea
                if dropped is not None:
                    dropped.append(phrase)
                continue
            seen_words |= new_words
            phrases.append(phrase)
            kept += 1
    return truncate_phrases(idea, phrases)


def repair(idea: str, recent=()) -> str:
    """Keyword-chosen additions, one style / lighting / composition per idea, avoiding recent repeats."""
    used = {p for other, phrases in recent if unrelated(idea, other) for p in phrases}
    for pattern, choices in FALLBACK_STYLES:
        if re.search(pattern, idea, re.I):
            start = zlib.crc32(idea.lower().encode())
            picked = []
            for options in choices:
                ranked = [options[(start + i) % len(options)] for i in range(len(options))]
                picked.append(next((o for o in ranked if _norm(o) not in used), ranked[0]))
            return truncate_phrases(idea, picked)
    return idea


def enhance(idea: str, llm: ChatLLM | None, attempts: int = 2) -> EnhanceResult:
    idea = fit_idea(idea)
    problems: list[str] = []
    with _recent_lock:
        recent = list(RECENT)
    nearest = nearest_examples(idea, k=attempts) if llm else []
    result = None
    dropped: list[str] = []
    for attempt in range(attempts if llm else 0):
        shown = nearest[attempt:attempt + 1]  # the nearest example, then the next one
        try:
            prompt = assemble(idea, _ask(llm, idea, seed=attempt, examples=shown), dropped)
        except (LLMError, ValueError) as exc:
            problems.append(f"attempt {attempt + 1}: {exc}")
            continue
        found = rubric(idea, prompt, shown, recent)
        if not found:
            result = EnhanceResult(prompt, "llm" if attempt == 0 else "llm-retry", attempt + 1, problems, dropped)
            break
        problems.append(f"attempt {attempt + 1}: {'; '.join(found)}")
    if result is None:
        result = EnhanceResult(repair(idea, recent), "repaired", attempts, problems, dropped)
        log.info("step=enhance source=repaired problems=%s", " | ".join(problems))
    if dropped:
        log.info("step=enhance dropped_new_subjects=%s", " | ".join(dropped))
    with _recent_lock:
        RECENT.append((idea, additions_of(idea, result.prompt)))
    return result
