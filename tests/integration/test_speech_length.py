"""`atelier transcribe` refuses an over-long recording before decoding it (issue 21, item 7).

The red team's case: a 3-hour file was decoded whole (2.6 GB RSS, 29 s) before it was refused for length. Here a
3-hour WAV (a sparse file: a real header, 345 MB of zero samples that take no disk) is refused from its header, by
a real `atelier transcribe` process, in well under a second of work and without loading the model; a WebM whose
header has no duration (as a browser's MediaRecorder writes it) is cut off as soon as its decoded length passes the
limit.
"""
from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import ROOT, cli_env

RATE = 16000


def long_wav(path, seconds: int) -> None:
    """A WAV whose header and size say `seconds` of 16 kHz mono s16; the samples are a hole in a sparse file."""
    size = seconds * RATE * 2
    header = (b"RIFF" + struct.pack("<I", 36 + size) + b"WAVE" + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, RATE, RATE * 2, 2, 16)
              + b"data" + struct.pack("<I", size))
    with open(path, "wb") as f:
        f.write(header)
        f.truncate(len(header) + size)


class _Unseekable(io.RawIOBase):
    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:  # as a browser streams a recording: the muxer cannot go back to write the duration
        return False

    def write(self, chunk) -> int:
        self.data += bytes(chunk)
        return len(chunk)


def webm_without_duration(seconds: float, rate: int = 48000) -> bytes:
    import av

    out = _Unseekable()
    with av.open(out, mode="w", format="webm") as container:
        stream = container.add_stream("libopus", rate=rate)
        stream.layout = "mono"
        silence = np.zeros((1, 960), dtype=np.int16)
        for i in range(int(seconds * rate / 960)):
            frame = av.AudioFrame.from_ndarray(silence, format="s16", layout="mono")
            frame.sample_rate, frame.pts = rate, i * 960
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return bytes(out.data)


def test_a_three_hour_file_is_refused_from_its_header_in_a_real_cli_process(tmp_path):
    wav = tmp_path / "three-hours.wav"
    long_wav(wav, 3 * 3600)
    probe = ("import json, sys, time\n"
             "from agent.cli import main\n"
             "t = time.perf_counter(); rc = main(['transcribe', sys.argv[1]]); t = time.perf_counter() - t\n"
             "import models.speech as s\n"
             # VmHWM is this process's own peak (ru_maxrss would carry pytest's peak across fork and exec)
             "hwm = next(int(x.split()[1]) for x in open('/proc/self/status') if x.startswith('VmHWM:'))\n"
             "print(json.dumps({'rc': rc, 'seconds': t, 'rss_mb': hwm / 1024,"
             " 'model_loaded': s._model is not None}))\n")
    out = subprocess.run([sys.executable, "-c", probe, str(wav)], cwd=ROOT, env=cli_env(tmp_path / "data"), capture_output=True,
                         timeout=120)
    err = out.stderr.decode()
    result = json.loads(out.stdout.decode().strip().splitlines()[-1])
    assert result["rc"] == 2 and "audio is 10800 s long (from its header); the limit is 300 s" in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    print(f"3-hour WAV refused in {result['seconds']:.3f} s, peak RSS {result['rss_mb']:.0f} MB")
    # the whole command (settings check included) on a loaded 2-core box; decoding the file took 29 s and 2.6 GB
    assert result["seconds"] < 10 and result["rss_mb"] < 400 and not result["model_loaded"]
    started = time.perf_counter()
    from agent.speech import TranscriptionError, transcribe

    with pytest.raises(TranscriptionError, match="from its header"):
        transcribe(wav)
    assert time.perf_counter() - started < 2.0  # the refusal itself: opening the header


def test_a_recording_without_a_duration_stops_decoding_at_the_limit():
    from agent.speech import TranscriptionError, decode_within, transcribe

    data = webm_without_duration(12)
    import av

    with av.open(io.BytesIO(data)) as container:  # the premise: nothing in the header says how long it is
        assert container.duration is None and container.streams.audio[0].duration is None
    with pytest.raises(TranscriptionError, match=r"longer than the limit of 5 s \(stopped decoding at \d+ s\)") as err:
        transcribe(data, max_seconds=5)
    # decoding goes in faster-whisper's groups of 500 000 input samples (about 10 s at 48 kHz), so it stops within one
    assert int(str(err.value).rsplit("at ", 1)[1].split(" ")[0]) <= 5 + 11
    assert abs(len(decode_within(io.BytesIO(data), 30)) / RATE - 12) < 0.2  # under the limit: decoded whole


def test_decoding_is_what_faster_whisper_does():
    """The bounded decoder gives the samples faster-whisper's own decode_audio gives (so transcripts stay the same)."""
    import av
    from faster_whisper.audio import decode_audio

    buf = io.BytesIO()
    tone = (np.sin(np.arange(3 * 22050) * 2 * np.pi * 440 / 22050) * 8000).astype(np.int16)
    with av.open(buf, mode="w", format="wav") as container:
        stream = container.add_stream("pcm_s16le", rate=22050)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(tone.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = 22050
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    from agent.speech import decode_within

    ours = decode_within(io.BytesIO(buf.getvalue()), 300)
    theirs = decode_audio(io.BytesIO(buf.getvalue()))
    assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs)


def test_a_file_that_is_not_audio_is_a_clear_error(tmp_path):
    from agent.speech import TranscriptionError, transcribe

    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF\x00\x00\x00\x00WAVEthis is not audio at all" * 10)
    started = time.perf_counter()
    with pytest.raises(TranscriptionError, match="could not read audio"):
        transcribe(junk)
    assert time.perf_counter() - started < 5
