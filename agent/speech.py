"""Speech to text with faster-whisper on the packaged tiny.en model (or ATELIER_WHISPER_MODEL_PATH)."""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("atelier.speech")

_model = None
_lock = threading.Lock()


class TranscriptionError(ValueError):
    pass


@dataclass
class Transcript:
    text: str
    language: str
    duration: float  # seconds of audio
    seconds: float  # seconds it took

    @property
    def heard_nothing(self) -> bool:
        return len(self.text.strip(" .,!?-")) < 2


def _load():
    global _model
    with _lock:
        if _model is None:
            from faster_whisper import WhisperModel

            from models.registry import whisper_model_path

            started = time.perf_counter()
            _model = WhisperModel(str(whisper_model_path()), device="cpu", compute_type="int8", cpu_threads=os.cpu_count() or 2)
            log.info("step=load_whisper seconds=%.2f", time.perf_counter() - started)
    return _model


def transcribe(audio: str | Path | bytes, max_seconds: float = 300.0) -> Transcript:
    """Transcribe a file path or in-memory audio (any format PyAV/ffmpeg reads: wav, webm, ogg, mp3 ...)."""
    import io

    source = io.BytesIO(audio) if isinstance(audio, (bytes, bytearray)) else str(audio)
    if isinstance(source, str) and not Path(source).is_file():
        raise TranscriptionError(f"audio file not found: {source}")
    model = _load()
    started = time.perf_counter()
    try:
        with _lock:
            segments, info = model.transcribe(source, language="en", beam_size=1, vad_filter=True,
                                              condition_on_previous_text=False)
            if info.duration > max_seconds:
                raise TranscriptionError(f"audio is {info.duration:.0f} s long; the limit is {max_seconds:.0f} s")
            text = " ".join(segment.text.strip() for segment in segments).strip()
    except TranscriptionError:
        raise
    except Exception as exc:  # PyAV raises a zoo of errors for unreadable input
        raise TranscriptionError(f"could not read audio: {exc.__class__.__name__}: {str(exc)[:200]}") from exc
    seconds = time.perf_counter() - started
    log.info("step=transcribe duration=%.2f seconds=%.2f chars=%d", info.duration, seconds, len(text))
    return Transcript(text=text, language=info.language, duration=round(info.duration, 3), seconds=round(seconds, 3))
