"""Word error rate and real-time factor of `agent.speech.transcribe` on speech synthesised by espeak-ng.

    .venv/bin/python benchmarks/voice_wer.py [--configs legacy,default] [--split tune,held_out] [--json]

A fixed set of requests typical of Atelier, spoken by several espeak-ng voices at several speeds. Phrases and
voices are split: the decoding settings were tuned on `tune` only; `held_out` (other phrases, other voices)
shows whether the gain carries over. The simulated user has a short history of past ideas (PAST_PROMPTS), the
per-user vocabulary `transcribe` builds; some held-out phrases refer to it, others do not.

WER = word edit distance / reference words, both sides first put through Whisper's own English text normaliser
(transformers' EnglishTextNormalizer, the one Whisper's published WERs use): lowercase, no punctuation, number
words as digits ("three d" / "3-D" / "3D" -> "3 d", "two weeks" -> "2 weeks"), contractions spelled out
("we're" -> "we are"), fillers ("um", "uh") dropped. Its British -> American spelling table is Whisper's
english.json, which no installed package ships; the mapping is empty here (none of the phrases needs it).
RTF = decoding seconds / audio seconds (the model load is not counted).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ATELIER_DATA_DIR", tempfile.mkdtemp(prefix="atelier-voice-"))

PHRASES = {
    "tune": [
        "now make it 3D",
        "a brass owl automaton",
        "make one like before but with wings",
        "the castle from last Thursday",
        "a glowing dragon standing on a cliff at sunset",
        "show me the dragon I made yesterday",
        "a cozy cabin in a snowy forest",
        "turn the owl into a 3D model",
        "make the castle red",
        "a viking longship in a storm",
        "no 3D please just the image",
        "a robot gardener watering tulips",
    ],
    "held_out": [
        "a crystal cave with an underground lake",
        "make it 3D",
        "like the last one but bigger",
        "a wooden toy train on a table",
        "the lighthouse I made two weeks ago",
        "an owl like before but made of glass",
        "a steampunk airship above the clouds",
        "give me a 3D model of the cabin",
    ],
}
VOICES = {
    "tune": [("en-us", 150), ("en-gb", 170), ("en+f3", 140)],
    "held_out": [("en-gb-scotland", 160), ("en-us+m3", 185)],
}
# The simulated user's earlier ideas, newest first (what the store lists for them).
PAST_PROMPTS = ["a brass owl automaton", "a castle on a hill at night", "a glowing dragon standing on a cliff at sunset",
                "a lighthouse on a rocky shore", "a cozy cabin in a snowy forest"]

_normaliser = None


def normalise(text: str) -> list[str]:
    """The words of `text` after Whisper's English normaliser (see the module docstring)."""
    global _normaliser
    if _normaliser is None:
        from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

        _normaliser = EnglishTextNormalizer({})
    return _normaliser(text).split()


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i]
        for j, h in enumerate(hyp, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return previous[-1]


def wer(pairs: list[tuple[str, str]]) -> float:
    errors = sum(edit_distance(normalise(ref), normalise(hyp)) for ref, hyp in pairs)
    return errors / max(1, sum(len(normalise(ref)) for ref, _ in pairs))


def synthesise(folder: Path, split: str, speed_factor: float = 1.0) -> list[tuple[str, str, Path]]:
    """(phrase, voice, wav) for every phrase of the split in every voice of the split, each voice's words per
    minute times `speed_factor`."""
    out = []
    for v, (voice, speed) in enumerate(VOICES[split]):
        speed = round(speed * speed_factor)
        for p, phrase in enumerate(PHRASES[split]):
            wav = folder / f"{split}-{v}-{speed}-{p}.wav"
            if not wav.exists():
                subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(wav), phrase], check=True)
            out.append((phrase, f"{voice}@{speed}", wav))
    return out


def configs():
    from dataclasses import replace

    from agent import speech

    return {"legacy": (speech.LEGACY, None),  # what transcribe did before: greedy, no bias
            "beam": (speech.DecodeOptions(initial_prompt=False, hotwords=False), None),
            "beam+prompt": (speech.DecodeOptions(hotwords=False), None),
            "beam+hotwords": (speech.DecodeOptions(initial_prompt=False), PAST_PROMPTS),
            "default-int8": (replace(speech.DEFAULT, compute_type="int8"), PAST_PROMPTS),  # the default until float32
            "default": (speech.DEFAULT, PAST_PROMPTS),  # beam + prompt + hotwords with the user's history
            "default-float32": (replace(speech.DEFAULT, compute_type="float32"), PAST_PROMPTS),  # for a chosen model
            "default-no-history": (speech.DEFAULT, []),
            # each one change from the default (measured on `tune`; none of them helped, docs/voice.md)
            "default-no-prompt": (replace(speech.DEFAULT, initial_prompt=False), PAST_PROMPTS),
            "default-no-hotwords": (replace(speech.DEFAULT, hotwords=False), PAST_PROMPTS),
            "default-beam3": (replace(speech.DEFAULT, beam_size=3), PAST_PROMPTS),
            "default-beam8": (replace(speech.DEFAULT, beam_size=8), PAST_PROMPTS),
            "default-patience2": (replace(speech.DEFAULT, extra={"patience": 2.0}), PAST_PROMPTS),
            "default-length-penalty0.5": (replace(speech.DEFAULT, extra={"length_penalty": 0.5}), PAST_PROMPTS),
            "default-temperature0": (replace(speech.DEFAULT, extra={"temperature": 0.0}), PAST_PROMPTS),
            "default-vad-defaults": (replace(speech.DEFAULT, vad_parameters={}), PAST_PROMPTS)}


def run(config_names: list[str], splits: list[str], folder: Path, speed_factor: float = 1.0) -> dict:
    from agent import speech

    speech._load()
    table = configs()
    results: dict = {"model": str(speech.loaded_model_path()), "speed_factor": speed_factor, "rows": []}
    for split in splits:
        clips = synthesise(folder, split, speed_factor)
        for name in config_names:
            options, history = table[name]
            pairs, audio, decode, misses = [], 0.0, 0.0, []
            for phrase, voice, wav in clips:
                started = time.perf_counter()
                result = speech.transcribe(wav, options=options, prompts=history)
                decode += time.perf_counter() - started
                audio += result.duration
                pairs.append((phrase, result.text))
                if normalise(phrase) != normalise(result.text):
                    misses.append({"voice": voice, "said": phrase, "heard": result.text})
            row = {"split": split, "config": name, "clips": len(clips), "wer": round(wer(pairs), 3),
                   "rtf": round(decode / audio, 3), "exact": len(clips) - len(misses), "misses": misses}
            results["rows"].append(row)
            print(f"{split:<9} {name:<20} WER {row['wer']:.3f}  RTF {row['rtf']:.3f}  exact {row['exact']}/{len(clips)}",
                  file=sys.stderr, flush=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="legacy,default", help=f"comma-separated, of: {', '.join(configs())}")
    parser.add_argument("--split", default="tune,held_out")
    parser.add_argument("--audio-dir", help="keep the synthesised clips here (default: a temp dir)")
    parser.add_argument("--misses", action="store_true", help="print each misheard phrase")
    parser.add_argument("--speed-factor", type=float, default=1.0,
                        help="scale every voice's espeak-ng words per minute (how WER depends on the speaking rate)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if shutil.which("espeak-ng") is None:
        print("espeak-ng is not installed (apt-get install espeak-ng)", file=sys.stderr)
        return 2
    names = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [n for n in names if n not in configs()]
    if unknown:
        parser.error(f"unknown config(s): {', '.join(unknown)}")
    folder = Path(args.audio_dir) if args.audio_dir else Path(tempfile.mkdtemp(prefix="atelier-voice-wav-"))
    folder.mkdir(parents=True, exist_ok=True)
    splits = [s.strip() for s in args.split.split(",") if s.strip()]
    if not splits or set(splits) - set(PHRASES):
        parser.error(f"--split takes a comma-separated list of: {', '.join(PHRASES)}")
    if not 0.3 <= args.speed_factor <= 3.0:
        parser.error("--speed-factor must be between 0.3 and 3")
    results = run(names, splits, folder, args.speed_factor)
    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    print(f"model: {results['model']}, espeak-ng speed x{args.speed_factor:g}")
    print("| split | settings | clips | WER | real-time factor |\n|---|---|---|---|---|")
    for row in results["rows"]:
        print(f"| {row['split']} | {row['config']} | {row['clips']} | {row['wer']:.3f} | {row['rtf']:.3f} |")
    if args.misses:
        for row in results["rows"]:
            for miss in row["misses"]:
                print(f"{row['split']}/{row['config']} [{miss['voice']}] {miss['said']!r} -> {miss['heard']!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
