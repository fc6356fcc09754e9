"""enhance_prompt: idea -> one image prompt that keeps every content word and fits CLIP's 77 tokens.

The model does not rewrite the idea (a 135M model drops words and chats); it fills a JSON schema of
additions — details, style, lighting, composition — which are sanitised and appended to the idea.
Every result is checked against the rubric; a failing one is retried with another seed, then repaired
with a keyword-chosen style so the tool never returns chatter.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field

from agent.llm import ChatLLM, LLMError, parse_json
from agent.prompts import ENHANCE_FEWSHOT, ENHANCE_SYSTEM

from .clip_tokens import CLIP_CONTEXT, count_tokens, truncate_phrases

log = logging.getLogger("atelier.enhance")

PARTS = ("details", "style", "lighting", "composition")
ENHANCE_SCHEMA = {
    "type": "object",
    "properties": {part: {"type": "string", "maxLength": 70} for part in PARTS},
    "required": list(PARTS),
}
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
# Keyword -> fallback additions, used only when the model's additions fail the rubric twice.
FALLBACK_STYLES = [
    (r"dragon|castle|knight|wizard|elf|sword|fantasy|phoenix|myth", ["epic fantasy concept art", "dramatic rim lighting", "highly detailed, wide shot"]),
    (r"robot|space|cyber|futur|sci-?fi|astronaut|neon|mech", ["sleek sci-fi concept art", "cinematic neon glow", "sharp focus, centered composition"]),
    (r"cat|dog|fox|owl|bird|frog|animal|lion|horse|whale", ["charming wildlife illustration", "soft natural light", "close-up, shallow depth of field"]),
    (r"forest|mountain|lake|ocean|sea|landscape|island|desert|river", ["sweeping landscape painting", "golden hour light", "wide angle, rule of thirds"]),
    (r"", ["highly detailed digital art", "soft studio lighting", "centered composition, clean background"]),
]


@dataclass
class EnhanceResult:
    prompt: str
    source: str  # "llm" | "llm-retry" | "repaired"
    attempts: int
    problems: list[str] = field(default_factory=list)  # what failed before the returned prompt


def content_words(text: str) -> list[str]:
    words = re.findall(r"[a-z0-9][a-z0-9'-]*", text.lower())
    return [w for w in words if w not in STOPWORDS and len(w) > 1]


def rubric(idea: str, prompt: str) -> list[str]:
    """Empty list = passes. Checks the properties the issue asks of an enhanced prompt."""
    problems = []
    have = set(re.findall(r"[a-z0-9][a-z0-9'-]*", prompt.lower()))
    missing = [w for w in content_words(idea) if w not in have]
    if missing:
        problems.append(f"drops idea words: {', '.join(missing[:5])}")
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
    return problems


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


def _ask(llm: ChatLLM, idea: str, seed: int) -> dict:
    messages = [{"role": "system", "content": ENHANCE_SYSTEM}]
    for example, answer in ENHANCE_FEWSHOT:
        messages += [{"role": "user", "content": f"Idea: {example}"}, {"role": "assistant", "content": json.dumps(answer)}]
    messages.append({"role": "user", "content": f"Idea: {idea}"})
    return parse_json(llm.chat(messages, max_tokens=160, temperature=0.7 if seed else 0.3, json_schema=ENHANCE_SCHEMA, seed=seed))


def assemble(idea: str, additions: dict) -> str:
    """idea + the model's additions: split into short phrases, without repeats of the idea or each other."""
    idea_words = set(content_words(idea))
    phrases: list[str] = []
    seen_words: set[str] = set(idea_words)
    for part in PARTS:
        kept = 0
        for raw in re.split(r"[,;]", str(additions.get(part, ""))):
            phrase = _clean(re.sub(r"^(a|an|the)\s+", "", raw.strip(), flags=re.I))
            new_words = set(content_words(phrase or "")) - seen_words
            if not phrase or not new_words or kept >= 2:
                continue  # empty, chatter, or only repeats words we already have
            seen_words |= new_words
            phrases.append(phrase)
            kept += 1
    return truncate_phrases(idea, phrases)


def enhance(idea: str, llm: ChatLLM | None, attempts: int = 2) -> EnhanceResult:
    idea = fit_idea(idea)
    problems: list[str] = []
    for attempt in range(attempts if llm else 0):
        try:
            prompt = assemble(idea, _ask(llm, idea, seed=attempt))
        except (LLMError, ValueError) as exc:
            problems.append(f"attempt {attempt + 1}: {exc}")
            continue
        found = rubric(idea, prompt)
        if not found:
            return EnhanceResult(prompt, "llm" if attempt == 0 else "llm-retry", attempt + 1, problems)
        problems.append(f"attempt {attempt + 1}: {'; '.join(found)}")
    for pattern, additions in FALLBACK_STYLES:
        if re.search(pattern, idea, re.I):
            prompt = truncate_phrases(idea, additions)
            break
    log.info("step=enhance source=repaired problems=%s", " | ".join(problems))
    return EnhanceResult(prompt, "repaired", attempts, problems)
