"""Development tool: the phone timeline of the demo speech, from eSpeak NG itself.

``python -m ernerf_core.demo.espeak_timeline`` synthesises the demo text again with the
settings of ``assets/README.md`` through libespeak-ng (Debian package ``espeak-ng``), records
the synthesiser's phoneme events (the sample where each phoneme starts), checks that the
audio it made is the committed clip, and writes ``assets/demo_speech_phones.tsv``. The tool
never needs this at run time: the timeline is committed beside the clip.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import sys
from pathlib import Path

import numpy as np

from .speech import DEMO_PHONES, DEMO_SPEECH, SAMPLE_RATE, load_clip

DEMO_TEXT = ("Hello, and welcome to this short demonstration. I am going to talk for a little while, so that "
             "the model can learn how my face moves when I speak. The weather was lovely this morning, and we "
             "walked along the river to the old stone bridge. Later we had coffee and planned a trip to the "
             "mountains.")
VOICE, RATE_WPM, PITCH, WORD_GAP = "en-us", 150, 45, 4  # espeak-ng -v en-us -s 150 -p 45 -g 4
# speak_lib.h
AUDIO_OUTPUT_SYNCHRONOUS, INITIALIZE_PHONEME_EVENTS = 2, 0x0001
EVENT_LIST_TERMINATED, EVENT_PHONEME = 0, 7
PARAM_RATE, PARAM_PITCH, PARAM_WORDGAP = 1, 3, 7
POS_CHARACTER, ENDPAUSE = 1, 0x1000
MIN_CORRELATION = 0.99  # with the committed clip (Ogg Vorbis of the same samples)


class _Event(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", ctypes.c_char * 8)]


_Callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


def synthesise(text: str = DEMO_TEXT) -> tuple[np.ndarray, int, list[tuple[int, str]]]:
    """(int16 samples, sample rate, [(first sample, phoneme)]) as ``espeak-ng`` makes them."""
    name = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
    lib = ctypes.CDLL(name)
    rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, None, INITIALIZE_PHONEME_EVENTS)
    chunks, events = [], []

    def on_audio(wav, n, event):
        if n > 0:
            chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while event[i].type != EVENT_LIST_TERMINATED:
            if event[i].type == EVENT_PHONEME:
                events.append((int(event[i].sample), event[i].id.split(b"\0")[0].decode()))
            i += 1
        return 0

    callback = _Callback(on_audio)  # kept alive until synthesis ends
    lib.espeak_SetSynthCallback(callback)
    lib.espeak_SetVoiceByName(VOICE.encode())
    for param, value in ((PARAM_RATE, RATE_WPM), (PARAM_PITCH, PITCH), (PARAM_WORDGAP, WORD_GAP)):
        lib.espeak_SetParameter(param, value, 0)
    data = text.encode()
    lib.espeak_Synth(data, len(data) + 1, 0, POS_CHARACTER, 0, ENDPAUSE, None, None)
    lib.espeak_Synchronize()
    return np.concatenate(chunks), rate, events


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEMO_PHONES)
    args = ap.parse_args(argv)
    import librosa

    samples, rate, events = synthesise()
    made = librosa.resample(samples.astype(np.float32) / 32768, orig_sr=rate, target_sr=SAMPLE_RATE, res_type="soxr_hq")
    clip = load_clip(DEMO_SPEECH)
    n = min(len(made), len(clip))
    corr = float(np.corrcoef(made[:n], clip[:n])[0, 1])
    if len(made) != len(clip) or corr < MIN_CORRELATION:
        print(f"espeak-ng made {len(made)} samples (correlation {corr:.4f}) where the committed clip has "
              f"{len(clip)}: another eSpeak NG version? The committed clip was made with 1.51", file=sys.stderr)
        return 1
    lines = ["start_s\tphone"] + [f"{s / rate:.4f}\t{p}" for s, p in events]
    args.out.write_text("\n".join(lines) + "\n")
    print(f"{len(events)} phonemes over {len(clip) / SAMPLE_RATE:.2f} s (audio correlation {corr:.4f}) -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
