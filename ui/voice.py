"""Microphone input: collect the browser's PCM16 chunks, notice when the speaker has finished, make a WAV.

Chainlit streams 16-bit mono PCM at [features.audio] sample_rate. End of speech is detected from the
signal level against the room's own noise floor: once there has been speech, a pause of `silence_ms`
ends the utterance. Whisper (with its VAD) then decides whether anything was actually said.
"""
from __future__ import annotations

import io
import wave
from dataclasses import dataclass, field

import numpy as np

STANDARD_RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)


@dataclass
class VoiceBuffer:
    sample_rate: int = 16000
    silence_ms: int = 1100  # pause after speech that ends the utterance
    min_speech_ms: int = 250  # this much loud signal counts as speech
    max_ms: int = 30000  # hard stop for a forgotten microphone
    no_speech_ms: int = 12000  # give up when nothing but noise was heard for this long
    chunks: list[bytes] = field(default_factory=list)
    _floor: float | None = None
    _speech_ms: float = 0.0
    _quiet_ms: float = 0.0
    _total_ms: float = 0.0
    finished: bool = False
    reason: str = ""
    _samples: int = 0
    _t0: float | None = None
    _s0: int = 0

    @property
    def heard_speech(self) -> bool:
        return self._speech_ms >= self.min_speech_ms

    @property
    def seconds(self) -> float:
        return self._total_ms / 1000.0

    def add(self, data: bytes, elapsed_ms: float | None = None) -> bool:
        """Add a chunk; True when the utterance has just ended (pause after speech, or a limit)."""
        if self.finished or not data:
            return False
        if len(data) % 2:
            data = data[:-1]
        self.chunks.append(bytes(data))
        samples = np.frombuffer(data, dtype="<i2").astype(np.float32)
        if samples.size == 0:
            return False
        self._note_timing(samples.size, elapsed_ms)
        ms = 1000.0 * samples.size / self.sample_rate
        self._total_ms += ms
        rms = float(np.sqrt(np.mean(samples * samples)))
        # The floor follows quiet stretches quickly and loud ones slowly.
        if self._floor is None:
            self._floor = rms
        else:
            rate = 0.3 if rms < self._floor else 0.01
            self._floor = (1 - rate) * self._floor + rate * rms
        loud = rms > max(400.0, 3.0 * (self._floor or 0.0))
        if loud:
            self._speech_ms += ms
            self._quiet_ms = 0.0
        else:
            self._quiet_ms += ms
        if self.heard_speech and self._quiet_ms >= self.silence_ms:
            return self._finish("pause")
        if self._total_ms >= self.max_ms:
            return self._finish("limit")
        if not self.heard_speech and self._total_ms >= self.no_speech_ms:
            return self._finish("no_speech")
        return False

    def _note_timing(self, n: int, elapsed_ms: float | None) -> None:
        """The browser's recorder may not run at the configured rate (Chainlit 2.12 records at 24 kHz
        whatever [features.audio] says): measure it from the chunks' timestamps and trust the measurement
        once there are two seconds of it."""
        self._samples += n
        if elapsed_ms is None:
            return
        if self._t0 is None:
            self._t0, self._s0 = float(elapsed_ms), self._samples
            return
        span = (float(elapsed_ms) - self._t0) / 1000.0
        if span >= 2.0:
            measured = (self._samples - self._s0) / span
            nearest = min(STANDARD_RATES, key=lambda r: abs(r - measured))
            if abs(nearest - measured) / nearest < 0.1 and nearest != self.sample_rate:
                self.sample_rate = nearest

    def _finish(self, reason: str) -> bool:
        self.finished = True
        self.reason = reason
        return True

    def wav_bytes(self) -> bytes:
        buf = io.BytesIO()
        with wave.open(buf, "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(self.sample_rate)
            wav.writeframes(b"".join(self.chunks))
        return buf.getvalue()


DIDNT_CATCH = ("I didn't catch that — it sounded like silence or noise. Try again a little closer to the microphone, "
               "or type your idea.")
