"""enhance_prompt with the real embedded model, judged by the rubric over 32 ideas."""
from __future__ import annotations

from pathlib import Path

from tools.clip_tokens import count_tokens
from tools.enhance import additions_of, assemble, content_words, copied_phrases, enhance, fit_idea, nearest_examples, repair, rubric
from tools.prompts import ENHANCE_EXAMPLES
from tools.subjects import GENERAL, new_subjects, subjects_in

IDEAS = [line.strip() for line in (Path(__file__).resolve().parents[1] / "support" / "data" / "enhance_ideas.txt").read_text().splitlines() if line.strip()]


def test_rubric_catches_the_failures_it_exists_for():
    idea = "a glowing dragon on a cliff"
    assert rubric(idea, "a glowing dragon on a cliff, epic fantasy art, rim lighting, wide shot") == []
    assert any("drops" in p for p in rubric(idea, "a dragon, epic fantasy art, rim lighting, wide shot"))
    assert any("chatter" in p for p in rubric(idea, "I'm thrilled! a glowing dragon on a cliff, epic art, rim light"))
    assert any("chatter" in p for p in rubric(idea, "a glowing dragon on a cliff, which style do you want?"))
    assert any("CLIP tokens" in p for p in rubric(idea, idea + ", " + ", ".join(["ornate detail"] * 40)))
    assert any("adds fewer" in p for p in rubric(idea, idea + ", art"))


def test_rubric_catches_copied_examples_and_phrases_reused_for_unrelated_ideas():
    lighthouse = [e for e in ENHANCE_EXAMPLES if e[0] == "an old lighthouse in a storm"]
    dragon = "a dragon egg in a nest of embers"
    copied = f"{dragon}, dramatic oil painting, lightning flash, sweeping beacon beam, rule of thirds"  # seen in the studio (then: a lamp beam)
    assert any("copies the example" in p for p in rubric(dragon, copied, lighthouse))
    assert rubric(dragon, copied) == []  # without knowing the example, nothing looks wrong: why the check exists
    assert copied_phrases(["sweeping beacon beam over the sea"], lighthouse) == ["sweeping beacon beam over the sea"]  # a run of 3 words
    helmet = "a diving helmet, dramatic oil painting, lightning flash, brass rivets"
    recent = [(dragon, additions_of(dragon, copied))]
    assert any("unrelated idea: dramatic oil painting, lightning flash" in p for p in rubric("a diving helmet", helmet, (), recent))
    assert rubric("a dragon egg on a pillow", "a dragon egg on a pillow, dramatic oil painting, silk folds, candlelit glow", (), recent) == []


def test_additions_that_bring_a_new_subject_are_caught_and_dropped():
    kite = "a red kite over a green hill"
    drifted = f"{kite}, beautiful sunrise over a mountain, soft golden light, golden eagle soaring through the sky"  # seen
    assert any("adds a subject the idea does not have: eagle" in p for p in rubric(kite, drifted))
    dropped: list[str] = []
    prompt = assemble(kite, {"details": "taut string, golden eagle soaring", "style": "bright gouache",
                             "lighting": "breezy noon light", "composition": "low angle"}, dropped)
    assert prompt == f"{kite}, taut string, bright gouache, breezy noon light, low angle" and dropped == ["golden eagle soaring"]
    # Details *of* the subjects the idea has, general words for them and terms of the trade are not new subjects.
    assert new_subjects("a glowing dragon on a cliff", "the creature's emerald scales, bird's-eye view, butterfly lighting") == []
    assert new_subjects("a cat and a dog sharing a blanket", "the dogs' paws, a kitten's fluffy fur") == ["kitten"]
    assert new_subjects("a cozy cabin", "an old man reading, two horses, a parked car, a brass lantern") == ["man", "horse", "car", "lantern"]
    assert subjects_in("wolves and fishermen") == {"wolf": "creature", "fisherman": "person"}


def test_the_idea_stays_first_and_in_order():
    idea = "a red kite over a green hill"
    assert any("in order" in p for p in rubric(idea, "a green hill under a red kite over it, bright gouache, breezy noon light"))
    assert rubric(idea, f"{idea}, taut string, bright gouache, breezy noon light") == []


def test_heldout_ideas_are_apart_from_the_pool_and_the_tests():
    from benchmarks.enhance_rubric import HELDOUT

    assert len(HELDOUT) >= 40
    assert not set(HELDOUT) & (set(IDEAS) | {e for e, _ in ENHANCE_EXAMPLES})
    groups = (Path(__file__).resolve().parents[2] / "benchmarks" / "data" / "enhance_heldout.txt").read_text()
    assert all(f"# {g}\n" in groups for g in ("objects", "scenes", "abstract ideas", "two subjects"))


def test_example_pool_has_no_shared_phrases_and_the_nearest_is_chosen():
    phrases = [p for _, a in ENHANCE_EXAMPLES for v in a.values() for p in v.split(", ")]
    assert len(ENHANCE_EXAMPLES) >= 10 and len(phrases) == len(set(phrases))
    assert nearest_examples("a steaming bowl of noodles", k=1)[0][0] == "a bowl of ramen"
    assert nearest_examples("a gray wolf howling in snowy woods", k=2)[0][0] == "a wolf in a winter forest"


def test_repairs_never_copy_the_example_pool():
    from tools.enhance import FALLBACK_STYLES

    phrases = [p.strip() for _, choices in FALLBACK_STYLES for options in choices for o in options for p in o.split(",")]
    assert copied_phrases(phrases, ENHANCE_EXAMPLES) == []
    # A repair never brings a subject of its own ("wildlife" is the animal ideas' general word for their own subject).
    assert set(subjects_in(", ".join(phrases))) <= GENERAL
    # Nor does a worked example teach the model to: its additions describe its own idea.
    assert [(idea, new_subjects(idea, ", ".join(a.values()))) for idea, a in ENHANCE_EXAMPLES if new_subjects(idea, ", ".join(a.values()))] == []


def test_repair_varies_by_idea():
    ideas = ("a red sports car", "a haunted lighthouse", "a vintage typewriter covered in ivy", "an old pirate map")
    additions = [", ".join(additions_of(idea, repair(idea))) for idea in ideas]
    assert all(additions) and len(set(additions)) >= 3


def test_clip_tokenizer_is_the_real_one():
    assert count_tokens("a photo of a cat") == 7  # <start> a photo of a cat <end>


def test_assemble_drops_chatter_and_repeats():
    prompt = assemble("a red fox", {"details": "a red fox, bushy tail, a red fox", "style": "I love this! so cute",
                                    "lighting": "golden hour", "composition": "close-up"})
    assert prompt == "a red fox, bushy tail, golden hour, close-up"


def test_long_ideas_are_compressed_to_fit():
    idea = "a castle " + "with towers and banners and moats and bridges " * 80
    assert count_tokens(fit_idea(idea)) <= 50


def test_pass_rate_over_ideas_with_the_real_model():
    from models.llm import get_llm

    llm = get_llm()
    results = [(idea, enhance(idea, llm)) for idea in IDEAS]
    failures = [(idea, r.prompt, rubric(idea, r.prompt)) for idea, r in results if rubric(idea, r.prompt)]
    from_model = sum(r.source != "repaired" for _, r in results)
    print(f"\nrubric pass {len(IDEAS) - len(failures)}/{len(IDEAS)}; model additions used for {from_model}/{len(IDEAS)}")
    assert len(IDEAS) >= 30
    assert not failures
    # The repair is a safety net, not the main path. Since copies of the example shown are rejected (about 70 %
    # kept) and additions naming a subject the idea lacks are dropped, the 135M model's own additions are kept for
    # about 62 % of these ideas and 64 % of the held-out ones (benchmarks/enhance_rubric.py), not 100 %.
    assert from_model / len(IDEAS) >= 0.55
    for idea, r in results:
        assert set(content_words(idea)) <= set(content_words(r.prompt))
        assert r.prompt.lower().startswith(fit_idea(idea).lower())  # the idea first, its words in order
        assert new_subjects(idea, ", ".join(additions_of(idea, r.prompt))) == []  # no second subject
    # No phrase from any worked example in the pool, and few phrases reused across the ideas.
    added = [(idea, additions_of(idea, r.prompt)) for idea, r in results]
    assert [(idea, copied_phrases(a, ENHANCE_EXAMPLES)) for idea, a in added if copied_phrases(a, ENHANCE_EXAMPLES)] == []
    phrases = [p for _, a in added for p in a]
    print(f"distinct additions {len(set(phrases)) / len(phrases):.0%}")
    assert len(set(phrases)) / len(phrases) >= 0.9
