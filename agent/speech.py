"""Speech to text for Atelier: faster-whisper on the packaged tiny.en model (or ATELIER_WHISPER_MODEL / _PATH),
loaded by models/speech.py, which also decodes the audio within its length limit.

tiny.en alone mishears this product's words ("now make it 3D" -> "now make it free deep"). What fixes most of it
(benchmarks/voice_wer.py, docs/voice.md): beam search, and a short vocabulary bias given to the decoder as the
text before the audio: faster-whisper's `hotwords` with the user's own newest past prompts (per user, a few
sentences), then an `initial_prompt` written the way people talk to Atelier, with the tool words in it.
Silero VAD (faster-whisper's vad_filter) cuts silence before decoding, so silence never meets the prompt and
comes back empty ("didn't catch that").
"""
from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from models import speech as whisper
from models.speech import (  # noqa: F401 (names the CLI, the studio, the tests and the benchmarks use from here)
    CHOSEN_COMPUTE_TYPE,
    COMPUTE_TYPES,
    PACKAGED_COMPUTE_TYPE,
    SAMPLING_RATE,
    TranscriptionError,
    decode_within,
    default_compute_type,
    header_duration,
    load as _load,
    loaded_model_path,
)

log = logging.getLogger("atelier.speech")

# Words the tools and the router listen for, in the way they are said. Given as the initial prompt (the text
# just before the audio), so the decoder expects a short request to Atelier with these words in it.
TOOL_PROMPT = ("Atelier, make an image, then a 3D model. Now make it 3D. Make one like before, but with wings. "
               "Show me the castle from last Thursday.")
MAX_PAST_PROMPTS = 6  # newest distinct ideas of this user
MAX_WORDS_PER_PROMPT = 12
MAX_HOTWORD_CHARS = 320  # ~70 tokens: Whisper keeps at most 223 tokens of context, and long context slows decoding


@dataclass
class Transcript:
    text: str
    language: str
    duration: float  # seconds of audio
    seconds: float  # seconds it took

    @property
    def heard_nothing(self) -> bool:
        return len(self.text.strip(" .,!?-")) < 2


@dataclass(frozen=True)
class DecodeOptions:
    """How Whisper decodes. DEFAULT is what `transcribe` uses; LEGACY is what it used before (the benchmark's
    baseline)."""

    beam_size: int = 5
    initial_prompt: bool = True  # TOOL_PROMPT as the text before the audio
    hotwords: bool = True  # the user's past prompts, before that
    vad_filter: bool = True
    vad_parameters: dict = field(default_factory=lambda: {"min_silence_duration_ms": 500, "speech_pad_ms": 300})
    without_timestamps: bool = True  # short utterances; timestamp tokens only cost decoding steps
    compute_type: str | None = None  # None: PACKAGED_COMPUTE_TYPE / CHOSEN_COMPUTE_TYPE by model
    extra: dict = field(default_factory=dict)  # any other WhisperModel.transcribe argument (patience ...)

    def __post_init__(self):
        if self.compute_type is not None and self.compute_type not in COMPUTE_TYPES:
            raise ValueError(f"compute_type={self.compute_type!r}: one of {', '.join(sorted(COMPUTE_TYPES))}, or None")
        if self.beam_size < 1:
            raise ValueError(f"beam_size={self.beam_size}: at least 1")

    def kwargs(self, hotwords: str | None) -> dict:
        out = {"language": "en", "beam_size": self.beam_size, "vad_filter": self.vad_filter,
               "condition_on_previous_text": False, "without_timestamps": self.without_timestamps}
        if self.vad_filter and self.vad_parameters:
            out["vad_parameters"] = dict(self.vad_parameters)
        if self.initial_prompt:
            out["initial_prompt"] = TOOL_PROMPT
        if self.hotwords and hotwords:
            out["hotwords"] = hotwords
        out.update(self.extra)
        return out


DEFAULT = DecodeOptions()
LEGACY = DecodeOptions(beam_size=1, initial_prompt=False, hotwords=False, vad_parameters={}, without_timestamps=False,
                       compute_type="int8")


def _sentence(text: str) -> str:
    words = re.sub(r"\s+", " ", text).strip().split(" ")[:MAX_WORDS_PER_PROMPT]
    body = " ".join(words).strip(" ,.;:!?")
    return f"{body[:1].upper()}{body[1:]}." if body else ""


def build_hotwords(past_prompts: list[str] | None = None) -> str:
    """The user's newest distinct past prompts as whole sentences ("A brass owl automaton. A castle at night."),
    capped in length. Whole sentences: a cut-off phrase makes the decoder continue it instead of listening."""
    out: list[str] = []
    seen: set[str] = set()
    for prompt in past_prompts or []:
        sentence = _sentence(prompt)
        if not sentence or sentence.lower() in seen:
            continue
        if len(" ".join([*out, sentence])) > MAX_HOTWORD_CHARS or len(out) >= MAX_PAST_PROMPTS:
            break
        seen.add(sentence.lower())
        out.append(sentence)
    return " ".join(out)


def past_prompts(user_id: str, limit: int = MAX_PAST_PROMPTS * 3) -> list[str]:
    """The user's own newest ideas (original prompts), from the store; [] when there is no store yet."""
    try:
        from memory.store import get_store

        return [c.original_prompt for c in get_store().list(user_id, limit=limit) if c.original_prompt]
    except Exception as exc:  # a vocabulary is a nicety: never fail a transcription over it
        log.warning("step=voice_vocabulary user=%s status=failed reason=%s", user_id, exc)
        return []


def transcribe(audio: str | Path | bytes, max_seconds: float = 300.0, *, user_id: str | None = None,
               prompts: list[str] | None = None, options: DecodeOptions | None = None) -> Transcript:
    """Transcribe a file path or in-memory audio (any format PyAV/ffmpeg reads: wav, webm, ogg, mp3 ...).

    The vocabulary bias uses `prompts` if given, else the past prompts of `user_id` (none without a user);
    ATELIER_VOICE_VOCABULARY=false turns the bias off."""
    import io

    from agent.settings import get_settings

    source = io.BytesIO(audio) if isinstance(audio, (bytes, bytearray)) else str(audio)
    if isinstance(source, str) and not Path(source).is_file():
        raise TranscriptionError(f"audio file not found: {source}")
    started = time.perf_counter()
    try:
        samples = decode_within(source, max_seconds)  # before the model is loaded: a refusal costs nothing
    except TranscriptionError:
        raise
    except Exception as exc:  # PyAV raises a zoo of errors for unreadable input
        raise TranscriptionError(f"could not read audio: {exc.__class__.__name__}: {str(exc)[:200]}") from exc
    decode_seconds = time.perf_counter() - started
    options = options or DEFAULT
    if not get_settings().voice_vocabulary:
        options = replace(options, initial_prompt=False, hotwords=False)
    if prompts is None and user_id is not None and options.hotwords:
        prompts = past_prompts(user_id)
    hotwords = build_hotwords(prompts) if options.hotwords else None
    model = _load(options.compute_type)
    started = time.perf_counter()
    try:
        with whisper.lock:
            segments, info = model.transcribe(samples, **options.kwargs(hotwords))
            text = " ".join(segment.text.strip() for segment in segments).strip()
    except Exception as exc:
        raise TranscriptionError(f"could not transcribe audio: {exc.__class__.__name__}: {str(exc)[:200]}") from exc
    seconds = decode_seconds + time.perf_counter() - started  # decoding included, as when Whisper decoded the file
    log.info("step=transcribe user=%s duration=%.2f seconds=%.2f chars=%d beam=%d compute_type=%s vocabulary=%d",
             user_id or "-", info.duration, seconds, len(text), options.beam_size,
             options.compute_type or default_compute_type(loaded_model_path()), len(prompts or []) if options.hotwords else 0)
    return Transcript(text=text, language=info.language, duration=round(info.duration, 3), seconds=round(seconds, 3))
