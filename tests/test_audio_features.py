"""Audio features: frame alignment for any input, every backend's shape, loading and errors.

HuBERT and wav2vec2 run on tiny randomly initialised models that the tests build, save and
load through the same path a user's checkpoint takes (a local directory, or the Hugging
Face cache under the checkpoint's name). Nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import REPO, shared_media

from ernerf_core.audio import (
    AUDIO_FEATURE_FILE,
    check_compatible,
    deepspeech,
    encoder,
    extract_features,
    frame_count,
)
from ernerf_core.audio.windows import fit_to_frames, frame_windows
from ernerf_core.errors import StageError

SR = 16000
BURST_HZ = 1000.0


def burst_signal(seconds: float, rate: int, channels: int, burst_frame: int, seed: int = 0) -> np.ndarray:
    """Faint noise with a loud 1 kHz tone filling exactly 25 fps frame ``burst_frame``: ``[T, ch]``."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * rate))
    t = np.arange(n) / rate
    x = 0.003 * rng.standard_normal(n)
    inside = (t >= burst_frame / 25) & (t < (burst_frame + 1) / 25)
    x[inside] += 0.5 * np.sin(2 * np.pi * BURST_HZ * t[inside])
    return np.stack([x * (0.8 + 0.2 * c) for c in range(channels)], axis=1).astype(np.float32)


def write_signal(path: Path, signal: np.ndarray, rate: int, subtype: str = "PCM_16") -> Path:
    sf.write(path, signal, rate, subtype=subtype)
    return path


def run(tmp_path: Path, audio: Path, backend: str = "mel", checkpoint: str | None = None,
        wav: bool = False, name: str = "f", noise_floor_dbfs: float | None = None) -> tuple[np.ndarray, dict]:
    """Features of ``audio`` (without the noise floor unless given: these tests are about the backends)."""
    out = tmp_path / f"{name}.npy"
    manifest = extract_features(subject="t", audio=audio, features_path=out,
                                manifest_path=tmp_path / f"{name}.json", backend=backend,
                                checkpoint=checkpoint, wav_path=tmp_path / f"{name}.wav" if wav else None,
                                noise_floor_dbfs=noise_floor_dbfs)
    assert json.loads((tmp_path / f"{name}.json").read_text())["frames"] == manifest["frames"]
    return np.load(out), manifest


def central_energy(features: np.ndarray) -> np.ndarray:
    """``[N, 16, C]`` mel windows -> ``[N]``: the two steps inside each frame, averaged."""
    return features[:, 7:9, :].mean(axis=(1, 2))


# ---------------------------------------------------------------- frame timing and windows


def test_frame_count_rounds_seconds_times_25_halves_up():
    assert frame_count(SR) == 25
    assert frame_count(int(7.3 * SR)) == 183  # 182.5 frames
    assert frame_count(60 * SR) == 1500
    assert frame_count(320) == 1 and frame_count(319) == 0
    assert frame_count(44100 * 3, sample_rate=44100) == 75


def test_frame_windows_take_16_steps_per_frame_with_zeros_past_the_ends():
    steps = np.arange(1, 11, dtype=np.float32)[:, None] * np.array([1, -1], np.float32)  # [10, 2]
    win = frame_windows(steps, n_frames=5, first=-8)
    assert win.shape == (5, 16, 2)
    for i in range(5):
        for j in range(16):
            k = 2 * i - 8 + j
            expect = steps[k] if 0 <= k < 10 else np.zeros(2)
            np.testing.assert_array_equal(win[i, j], expect)
    assert frame_windows(steps, n_frames=2, first=0, size=4).tolist() == [
        steps[0:4].tolist(), steps[2:6].tolist()]


def test_fit_to_frames_pads_or_trims_the_end():
    x = np.ones(1000, np.float32)
    assert fit_to_frames(x, 2).shape == (1280,) and fit_to_frames(x, 2)[1000:].sum() == 0
    assert fit_to_frames(x, 1).shape == (640,)


def test_feature_file_names_match_the_workflow():
    text = (REPO / "workflow/rules/common.smk").read_text()
    block = re.search(r"AUDIO_FEATURE_FILE = \{(.*?)\}", text, re.S).group(1)
    assert dict(re.findall(r'"(\w+)": "([\w.]+)"', block)) == AUDIO_FEATURE_FILE


# ---------------------------------------------------------------- mel: any rate / channels / length


@pytest.mark.parametrize("seconds", [1.0, 7.3, 60.0])
@pytest.mark.parametrize("rate", [8000, 16000, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
def test_mel_shape_and_alignment_for_any_rate_channels_and_length(tmp_path, seconds, rate, channels):
    n = frame_count(int(round(seconds * SR)))
    burst = n // 2 + 1
    audio = write_signal(tmp_path / "in.wav", burst_signal(seconds, rate, channels, burst), rate)
    feats, manifest = run(tmp_path, audio, wav=True)
    assert feats.shape == (n, 16, 80) and feats.dtype == np.float32
    assert manifest["frames"] == n and manifest["feature_shape"] == [n, 16, 80]
    assert manifest["source"]["audio"]["sample_rate"] == rate
    assert manifest["source"]["audio"]["channels"] == channels
    assert abs(manifest["duration_seconds"] - seconds) < 1e-3
    # The burst lights up the centre of its own frame's window, not a neighbour's.
    assert int(np.argmax(central_energy(feats))) == burst
    wav, wav_rate = sf.read(tmp_path / "f.wav")
    assert wav_rate == SR and wav.ndim == 1 and len(wav) == 640 * n


def test_mel_window_is_centred_on_its_frame(tmp_path):
    audio = write_signal(tmp_path / "in.wav", burst_signal(2.0, SR, 1, burst_frame=20), SR)
    feats, _ = run(tmp_path, audio)
    per_step = feats.mean(axis=2)  # [N, 16]
    # Frame 20's burst sits at steps 7-8 of window 20 and moves by 2 steps per frame.
    assert set(np.argsort(per_step[20])[-2:]) == {7, 8}
    assert set(np.argsort(per_step[21])[-2:]) == {5, 6}
    assert set(np.argsort(per_step[19])[-2:]) == {9, 10}


def test_mel_is_deterministic_and_independent_of_recording_gain(tmp_path):
    sig = burst_signal(3.0, 44100, 1, burst_frame=30, seed=3)
    a = write_signal(tmp_path / "a.wav", sig, 44100, subtype="FLOAT")  # no quantisation noise
    b = write_signal(tmp_path / "b.wav", sig * 0.25, 44100, subtype="FLOAT")
    fa, _ = run(tmp_path, a, name="a")
    fa2, _ = run(tmp_path, a, name="a2")
    fb, _ = run(tmp_path, b, name="b")
    np.testing.assert_array_equal(fa, fa2)
    np.testing.assert_allclose(fa, fb, atol=1e-4)
    assert fa.min() >= -1 and fa.max() == pytest.approx(1.0)


def test_mel_of_digital_silence_is_the_floor_and_needs_no_checkpoint(tmp_path):
    audio = write_signal(tmp_path / "s.wav", np.zeros((SR, 1), np.float32), SR)
    feats, manifest = run(tmp_path, audio, checkpoint="left/over/from/hubert")
    assert feats.shape == (25, 16, 80) and np.all(feats == -1.0)
    assert manifest["checkpoint"] is None and manifest["params"]["checkpoint"] == "left/over/from/hubert"


def test_noise_floor_lifts_digital_silence_to_a_quiet_room_and_keeps_the_wav_clean(tmp_path):
    from ernerf_core.audio.features import NOISE_FLOOR_DBFS, with_noise_floor

    sig = burst_signal(3.0, SR, 1, burst_frame=30, seed=1)
    sig[: SR] = 0.0  # a second of digital silence, then the bursts
    audio = write_signal(tmp_path / "s.wav", sig, SR, subtype="FLOAT")
    raw, _ = run(tmp_path, audio, name="raw")
    floored, manifest = run(tmp_path, audio, name="floor", wav=True, noise_floor_dbfs=NOISE_FLOOR_DBFS)
    assert np.all(raw[:20] == -1.0)  # silence: the floor of the log-mel everywhere
    assert floored[:20].mean() > -0.9 and floored[:20].std() > 0  # noise, like a room's pause
    tone = raw[30] > 0.5  # the burst's 1 kHz bins, far above the floor: unchanged
    assert tone.sum() > 4 and np.abs(floored[30][tone] - raw[30][tone]).max() < 0.05
    assert manifest["params"]["noise_floor_dbfs"] == NOISE_FLOOR_DBFS
    np.testing.assert_allclose(sf.read(tmp_path / "floor.wav")[0][: SR], 0.0, atol=1e-4)  # the wav: clean
    noise = with_noise_floor(np.zeros(SR * 4, np.float32), -40.0)
    assert 20 * np.log10(np.sqrt(np.mean(noise**2))) == pytest.approx(-40.0, abs=0.1)
    np.testing.assert_array_equal(noise, with_noise_floor(np.zeros(SR * 4, np.float32), -40.0))  # seeded
    assert with_noise_floor(sig, None) is sig


@pytest.mark.parametrize("suffix,codec_args", [
    (".mp3", ["-c:a", "libmp3lame", "-b:a", "128k"]),
    (".m4a", ["-c:a", "aac", "-b:a", "128k"]),
    (".mp4", ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac"]),
])
def test_compressed_audio_and_video_files_are_decoded(tmp_path, suffix, codec_args):
    from ernerf_core.media.ffmpeg import run_ffmpeg

    wav = write_signal(tmp_path / "src.wav", burst_signal(2.3, 44100, 2, burst_frame=30), 44100)
    gray = ["-f", "lavfi", "-i", "color=c=gray:size=32x32:rate=25:duration=2.3"]
    video_in = gray if suffix == ".mp4" else []
    out = tmp_path / f"clip{suffix}"
    run_ffmpeg(["-loglevel", "error", "-y", *video_in, "-i", str(wav), *codec_args, "-shortest", str(out)])
    feats, manifest = run(tmp_path, out)
    ref, _ = run(tmp_path, wav, name="ref")
    assert feats.shape == ref.shape == (58, 16, 80)  # round(2.3 s x 25) = 57.5 -> 58
    assert int(np.argmax(central_energy(feats))) == 30
    assert np.corrcoef(central_energy(feats), central_energy(ref))[0, 1] > 0.95
    assert suffix[1:] in manifest["source"]["format"]
    assert (manifest["source"]["video"] is not None) == (suffix == ".mp4")


def test_real_speech_clip_through_the_weights_free_backend(tmp_path):
    clip = shared_media("speech_jfk_11s.flac")
    feats, manifest = run(tmp_path, clip, wav=True)
    n = manifest["frames"]
    assert n == round(sf.info(clip).duration * 25) and feats.shape == (n, 16, 80)
    assert np.isfinite(feats).all() and feats.min() >= -1 and feats.max() <= 1
    # Loudness per frame from the waveform and from the features must rise and fall together.
    wav, _ = sf.read(tmp_path / "f.wav")
    rms_db = 10 * np.log10((wav.reshape(n, 640) ** 2).mean(axis=1) + 1e-10)
    assert np.corrcoef(rms_db, central_energy(feats))[0, 1] > 0.8


def test_frame_count_agrees_with_normalize_on_a_real_video(tmp_path):
    """The video's own audio track and normalize's aud.wav give normalize's frame count."""
    from ernerf_core.preprocess.normalize import normalize

    video = shared_media("talking_face_5s.mp4")
    data = tmp_path / "data"
    norm = normalize(subject="t", video=video, frames_dir=data / "ori_imgs", audio_path=data / "aud.wav",
                     manifest_path=tmp_path / "normalize.json", resolution=32, crop_scale=2.4,
                     min_seconds=2.0)
    from_video, _ = run(tmp_path, video, name="video")
    from_wav, manifest = run(tmp_path, data / "aud.wav", name="wav")
    assert from_video.shape[0] == from_wav.shape[0] == norm["frames"] == manifest["frames"]


# ---------------------------------------------------------------- bad input


def test_unreadable_silent_or_too_short_input_is_a_stage_error(tmp_path):
    from ernerf_core.media.ffmpeg import run_ffmpeg

    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not audio at all" * 10)
    mute = tmp_path / "mute.mp4"
    run_ffmpeg(["-loglevel", "error", "-y", "-f", "lavfi", "-i", "color=c=red:size=32x32:rate=25:duration=1",
                "-c:v", "libx264", "-pix_fmt", "yuv420p", str(mute)])
    tiny = write_signal(tmp_path / "tiny.wav", np.zeros((100, 1), np.float32), SR)
    for path, words in [(junk, "cannot decode"), (mute, "no audio stream"),
                        (tiny, "less than half"), (tmp_path / "absent.wav", "does not exist")]:
        with pytest.raises(StageError, match=words):
            run(tmp_path, path)
    with pytest.raises(StageError, match="unknown audio backend"):
        run(tmp_path, tiny, backend="mfcc")
    assert not list(tmp_path.glob("f*"))  # nothing half-written


# ---------------------------------------------------------------- tiny transformers checkpoints


def _conv_front_end(dim: int) -> dict:
    # The standard 20 ms / 25 ms front end, with few channels.
    return dict(conv_dim=(dim,) * 7, conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2),
                feat_extract_norm="layer", do_stable_layer_norm=True, num_conv_pos_embeddings=16,
                num_conv_pos_embedding_groups=4)


def _feature_extractor():
    from transformers import Wav2Vec2FeatureExtractor

    return Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SR, padding_value=0.0, do_normalize=True,
                                    return_attention_mask=True)


def make_hubert(path: Path, layers: int = 2, hidden: int = 32, seed: int = 0) -> Path:
    """Laid out like facebook/hubert-large-ls960-ft: a HubertForCTC (weights under `hubert.`)
    and the feature extractor's preprocessor_config.json."""
    import torch
    from transformers import HubertConfig, HubertForCTC

    torch.manual_seed(seed)
    config = HubertConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                          intermediate_size=2 * hidden, vocab_size=32, **_conv_front_end(8))
    HubertForCTC(config).save_pretrained(path)
    _feature_extractor().save_pretrained(path)
    return path


def make_wav2vec(path: Path, vocab_size: int = 44, seed: int = 0) -> Path:
    """Laid out like the reference's esperanto checkpoint: Wav2Vec2ForCTC, the feature
    extractor's preprocessor_config.json and the CTC tokenizer's files (vocab.json...)."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2CTCTokenizer, Wav2Vec2ForCTC

    path.mkdir(parents=True, exist_ok=True)
    letters = list("abcdefghijklmnoprstuvzĉĝĥĵŝŭ'-")[: vocab_size - 3]
    letters += [f"x{i}" for i in range(vocab_size - 3 - len(letters))]
    vocab = {token: i for i, token in enumerate(["|", *letters, "[UNK]", "[PAD]"])}
    (path / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    tokenizer = Wav2Vec2CTCTokenizer(str(path / "vocab.json"), unk_token="[UNK]", pad_token="[PAD]",
                                     word_delimiter_token="|")
    _feature_extractor().save_pretrained(path)
    tokenizer.save_pretrained(path)
    torch.manual_seed(seed)
    config = Wav2Vec2Config(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=64, pad_token_id=vocab["[PAD]"], **_conv_front_end(8))
    Wav2Vec2ForCTC(config).save_pretrained(path)
    return path


def put_in_hf_cache(model_dir: Path, cache: Path, repo_id: str) -> None:
    """Lay ``model_dir`` out as the Hugging Face cache keeps a downloaded repo."""
    entry = cache / f"models--{repo_id.replace('/', '--')}"
    commit = "0" * 40
    shutil.copytree(model_dir, entry / "snapshots" / commit)
    (entry / "refs").mkdir(parents=True)
    (entry / "refs" / "main").write_text(commit)


@pytest.fixture(scope="module")
def hubert_dir(tmp_path_factory) -> Path:
    return make_hubert(tmp_path_factory.mktemp("hubert") / "tiny-hubert")


@pytest.fixture(scope="module")
def wav2vec_dir(tmp_path_factory) -> Path:
    return make_wav2vec(tmp_path_factory.mktemp("wav2vec") / "tiny-wav2vec")


@pytest.fixture
def empty_hf_cache(tmp_path, monkeypatch) -> Path:
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


@pytest.mark.parametrize("seconds,rate,channels", [(1.0, 44100, 2), (7.3, 8000, 1), (60.0, 48000, 1)])
def test_hubert_gives_two_hidden_states_per_frame(tmp_path, hubert_dir, seconds, rate, channels):
    audio = write_signal(tmp_path / "in.wav", burst_signal(seconds, rate, channels, burst_frame=5), rate)
    feats, manifest = run(tmp_path, audio, backend="hubert", checkpoint=str(hubert_dir))
    n = frame_count(int(round(seconds * SR)))
    assert feats.shape == (n, 2, 32) and feats.dtype == np.float32 and np.isfinite(feats).all()
    assert manifest["feature_dim"] == 32 and manifest["checkpoint"] == str(hubert_dir)
    assert manifest["model"]["type"] == "hubert" and manifest["window"]["steps"] == 2


def test_hubert_matches_the_model_run_directly_and_is_deterministic(tmp_path, hubert_dir):
    import torch
    from transformers import HubertModel

    audio = write_signal(tmp_path / "in.wav", burst_signal(2.0, SR, 1, burst_frame=10, seed=1), SR)
    feats, _ = run(tmp_path, audio, backend="hubert", checkpoint=str(hubert_dir))
    again, _ = run(tmp_path, audio, backend="hubert", checkpoint=str(hubert_dir), name="g")
    np.testing.assert_array_equal(feats, again)
    # Independent computation: normalise, append the 80 samples that make 2N steps, one pass.
    x = sf.read(audio, dtype="float32")[0]
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    model = HubertModel.from_pretrained(hubert_dir).eval()
    with torch.no_grad():
        states = model(torch.from_numpy(np.pad(x, (0, 80)))[None]).last_hidden_state[0].numpy()
    assert states.shape == (100, 32)
    np.testing.assert_allclose(feats.reshape(100, 32), states, atol=1e-4)


def test_hubert_chunking_equals_one_pass(tmp_path, monkeypatch):
    """With no attention layers the model is local: overlapping chunks must reproduce one pass."""
    local = make_hubert(tmp_path / "local-hubert", layers=0, seed=2)
    audio = write_signal(tmp_path / "in.wav", burst_signal(7.3, 22050, 1, burst_frame=90, seed=2), 22050)
    whole, _ = run(tmp_path, audio, backend="hubert", checkpoint=str(local), name="whole")
    monkeypatch.setattr(encoder, "CHUNK_STEPS", 60)
    monkeypatch.setattr(encoder, "CONTEXT_STEPS", 20)  # > 8 steps: half the positional conv
    chunked, manifest = run(tmp_path, audio, backend="hubert", checkpoint=str(local), name="chunked")
    assert manifest["window"]["chunk_seconds"] == 1.2
    assert whole.shape == chunked.shape == (183, 2, 32)
    np.testing.assert_allclose(chunked, whole, atol=1e-4)


def test_hubert_attention_chunking_stays_close_to_one_pass(hubert_dir):
    """Attention is global: context around each chunk keeps it close to one pass (hard cuts do not)."""
    from transformers import HubertModel

    model = HubertModel.from_pretrained(hubert_dir).eval()
    values = np.random.default_rng(4).standard_normal(320 * 400 + 80).astype(np.float32)

    def states(**chunking):
        return encoder.encode_steps(lambda x: model(x).last_hidden_state, values, 400, **chunking)

    one = states(chunk_steps=400, context_steps=0)
    with_context = states(chunk_steps=100, context_steps=100)
    hard_cuts = states(chunk_steps=100, context_steps=0)  # what the reference does
    assert one.shape == with_context.shape == hard_cuts.shape == (400, 32)
    err, err_cuts = np.abs(with_context - one).max(), np.abs(hard_cuts - one).max()
    assert err < 0.1 * np.abs(one).mean() and err < 0.25 * err_cuts


def test_hubert_default_checkpoint_is_found_in_the_hf_cache(tmp_path, hubert_dir, empty_hf_cache):
    put_in_hf_cache(hubert_dir, empty_hf_cache, "facebook/hubert-large-ls960-ft")
    audio = write_signal(tmp_path / "in.wav", burst_signal(1.0, SR, 1, burst_frame=5), SR)
    feats, manifest = run(tmp_path, audio, backend="hubert")
    direct, _ = run(tmp_path, audio, backend="hubert", checkpoint=str(hubert_dir), name="direct")
    assert manifest["checkpoint"] == "facebook/hubert-large-ls960-ft"
    assert "Hugging Face cache" in manifest["checkpoint_source"]
    np.testing.assert_array_equal(feats, direct)


def test_wav2vec_gives_16_step_logit_windows(tmp_path, wav2vec_dir):
    audio = write_signal(tmp_path / "in.wav", burst_signal(7.3, 48000, 2, burst_frame=40), 48000)
    feats, manifest = run(tmp_path, audio, backend="wav2vec", checkpoint=str(wav2vec_dir))
    again, _ = run(tmp_path, audio, backend="wav2vec", checkpoint=str(wav2vec_dir), name="g")
    assert feats.shape == (183, 16, 44) and manifest["feature_dim"] == 44
    np.testing.assert_array_equal(feats, again)
    assert manifest["model"]["labels"][0] == "|" and len(manifest["model"]["labels"]) == 44
    # Reference layout: window i holds steps 2i-8 .. 2i+7, zeros before the start / after the end.
    assert np.all(feats[0, :8] == 0) and np.any(feats[0, 8] != 0)
    assert np.all(feats[-1, 10:] == 0) and np.any(feats[-1, 9] != 0)
    np.testing.assert_array_equal(feats[1, 6:14], feats[0, 8:16])  # consecutive windows share steps


def test_wav2vec_default_checkpoint_is_the_reference_esperanto_model(tmp_path, wav2vec_dir, empty_hf_cache):
    put_in_hf_cache(wav2vec_dir, empty_hf_cache, "cpierse/wav2vec2-large-xlsr-53-esperanto")
    audio = write_signal(tmp_path / "in.wav", burst_signal(1.0, SR, 1, burst_frame=5), SR)
    feats, manifest = run(tmp_path, audio, backend="wav2vec")
    assert feats.shape == (25, 16, 44)
    assert manifest["checkpoint"] == "cpierse/wav2vec2-large-xlsr-53-esperanto"


# ---------------------------------------------------------------- missing or wrong weights


def test_missing_default_checkpoints_name_what_where_and_how(tmp_path, empty_hf_cache):
    audio = write_signal(tmp_path / "in.wav", burst_signal(1.0, SR, 1, burst_frame=5), SR)
    for backend, name in [("hubert", "facebook/hubert-large-ls960-ft"),
                          ("wav2vec", "cpierse/wav2vec2-large-xlsr-53-esperanto")]:
        with pytest.raises(StageError) as err:
            run(tmp_path, audio, backend=backend)
        text = str(err.value)
        assert name in text and str(empty_hf_cache) in text and f"hf download {name}" in text
        assert "\n" not in text
    assert not list(tmp_path.glob("f*"))


def test_incomplete_or_wrong_checkpoints_are_refused(tmp_path, hubert_dir, wav2vec_dir, empty_hf_cache):
    audio = write_signal(tmp_path / "in.wav", burst_signal(1.0, SR, 1, burst_frame=5), SR)
    config_only = tmp_path / "config-only"
    config_only.mkdir()
    shutil.copy(hubert_dir / "config.json", config_only)
    empty = tmp_path / "empty"
    empty.mkdir()
    no_tokenizer = tmp_path / "no-tokenizer"
    no_tokenizer.mkdir()
    for name in ("config.json", "model.safetensors", "preprocessor_config.json"):
        shutil.copy(wav2vec_dir / name, no_tokenizer)
    cases = [
        ("hubert", str(tmp_path / "nowhere"), "not found"),
        ("hubert", str(empty), "has no readable config.json"),
        ("hubert", str(config_only), "no loadable weights"),
        ("hubert", str(wav2vec_dir), "is a 'wav2vec2' model"),
        ("wav2vec", str(hubert_dir), "is a 'hubert' model"),
        ("wav2vec", str(no_tokenizer), "Wav2Vec2Processor"),
    ]
    for backend, checkpoint, words in cases:
        with pytest.raises(StageError, match=words):
            run(tmp_path, audio, backend=backend, checkpoint=checkpoint)
    assert not list(tmp_path.glob("f*"))


def test_deepspeech_without_graph_or_tensorflow_says_what_to_install(tmp_path, monkeypatch):
    audio = write_signal(tmp_path / "in.wav", burst_signal(1.0, SR, 1, burst_frame=5), SR)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(StageError, match=r"no DeepSpeech graph at .*deepspeech-0_1_0-b90017e8\.pb"):
        run(tmp_path, audio, backend="deepspeech")
    with pytest.raises(StageError, match="not found"):
        run(tmp_path, audio, backend="deepspeech", checkpoint=str(tmp_path / "output_graph.pb"))
    if importlib.util.find_spec("tensorflow") is None:
        graph = tmp_path / "output_graph.pb"
        graph.write_bytes(b"\x00" * 64)
        with pytest.raises(StageError, match=r"needs TensorFlow.*pip install 'ernerf-core\[deepspeech\]'"):
            run(tmp_path, audio, backend="deepspeech", checkpoint=str(graph))
    assert not list(tmp_path.glob("f*"))


def test_deepspeech_input_is_the_reference_mfcc_context_layout():
    n_frames = 25
    rng = np.random.default_rng(5)
    samples = (0.1 * rng.standard_normal(640 * n_frames)).astype(np.float32)
    x = deepspeech.network_input(samples)
    assert x.shape == (2 * n_frames, 19 * 26)  # 99 MFCC frames, every second one, 9+1+9 context
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 1e-3
    # Row t holds MFCC frames 2(t-9) .. 2(t+9), past to future, standardised as one array (an
    # affine map): its centre block is frame 2t, the next block frame 2t+2.
    cep = deepspeech.mfcc(np.round(samples.astype(np.float64) * 32768))
    assert cep.shape == (99, 26)
    flat = x.reshape(50, 19, 26)
    assert np.corrcoef(flat[:, 9].ravel(), cep[::2].ravel())[0, 1] == pytest.approx(1.0, abs=1e-6)
    assert np.corrcoef(flat[:-1, 10].ravel(), cep[2::2].ravel())[0, 1] == pytest.approx(1.0, abs=1e-6)
    zero = flat[0, 0, 0]  # a zero MFCC vector (context before the start), standardised
    assert np.all(flat[0, :9] == zero) and np.all(flat[-1, 10:] == zero) and np.all(flat[0, 9] != zero)


def test_deepspeech_filterbank_and_energy_follow_python_speech_features():
    fb = deepspeech.mel_filterbank()
    assert fb.shape == (26, 257) and np.all(fb.max(axis=1) == 1.0) and np.all(fb >= 0)
    t = np.arange(1600) / SR
    tone = 10000 * np.sin(2 * np.pi * 1000 * t)
    cep = deepspeech.mfcc(tone)
    frames = tone[:400] - 0.97 * np.r_[0, tone[:399]]
    frames[0] = tone[0]
    energy = (np.abs(np.fft.rfft(frames, 512)) ** 2 / 512).sum()
    assert cep[0, 0] == pytest.approx(np.log(energy))
    assert cep.shape == (1 + int(np.ceil((1600 - 400) / 160)), 26)


def test_deepspeech_logits_become_reference_windows():
    logits = np.arange(50, dtype=np.float32)[:, None] * np.ones((1, 29), np.float32)
    win = deepspeech.logits_to_windows(logits, n_frames=25)
    assert win.shape == (25, 16, 29)
    assert win[0, 8, 0] == 0 and win[0, 7, 0] == 0 and win[1, 8, 0] == 2 and win[24, 8, 0] == 48
    assert np.all(win[24, 10:] == 0) and win[24, 9, 0] == 49


# ---------------------------------------------------------------- compatibility and CLI


def test_driving_features_must_match_the_trained_backend_and_dim():
    mel = {"backend": "mel", "checkpoint": None, "feature_shape": [100, 16, 80]}
    hubert = {"backend": "hubert", "checkpoint": "facebook/hubert-large-ls960-ft",
              "feature_shape": [50, 2, 1024]}
    check_compatible(mel, {**mel, "feature_shape": [7, 16, 80]}, "s")
    with pytest.raises(StageError, match=r"trained on 'hubert'.*are 'mel'.*audio\.backend: hubert with "
                                         r"audio\.checkpoint: facebook/hubert-large-ls960-ft"):
        check_compatible(hubert, mel, "s")
    with pytest.raises(StageError, match=r"\[2, 1024\] per frame.*\[2, 32\]"):
        check_compatible(hubert, {**hubert, "checkpoint": "tiny", "feature_shape": [9, 2, 32]}, "s")


def test_cli_runs_the_stage(tmp_path):
    import argparse

    from ernerf_core.audio import add_cli

    audio = write_signal(tmp_path / "speech.wav", burst_signal(1.0, 22050, 2, burst_frame=5), 22050)
    parser = argparse.ArgumentParser()
    add_cli(parser.add_subparsers())
    args = parser.parse_args(["audio-features", "--audio", str(audio), "--out", str(tmp_path / "x.npy"),
                              "--backend", "mel", "--wav", str(tmp_path / "x.wav")])
    manifest = args.func(args=args)
    assert np.load(tmp_path / "x.npy").shape == (25, 16, 80)
    assert json.loads((tmp_path / "x.json").read_text())["subject"] == "speech" == manifest["subject"]
    assert sf.info(tmp_path / "x.wav").samplerate == SR


# ---------------------------------------------------------------- phones (PocketSphinx, bundled model)


def test_phone_steps_are_the_decoded_shares_with_silence_past_the_ends():
    from ernerf_core.audio.phones import PHONE_INDEX, phone_steps, phone_windows

    # 2 frames = 4 steps = 8 decoder frames: AA on frames 0-2, M on 3, then nothing (silence)
    steps = phone_steps([("AA", 0, 2), ("M", 3, 3), ("+NSN+", 6, 7)], n_frames=2)
    assert steps.shape == (2 * 2 + 15, 40) and np.allclose(steps.sum(1), 1)
    aa, m = PHONE_INDEX["AA"], PHONE_INDEX["M"]
    body = steps[7:11]  # steps 0..3
    assert body[0, aa] == 1 and body[1, aa] == 0.5 and body[1, m] == 0.5 and body[2, 0] == 1 and body[3, 0] == 1
    assert (steps[:7, 0] == 1).all() and (steps[11:, 0] == 1).all()  # before and after the audio: SIL
    win = phone_windows(phone_steps([("AA", 0, 2), ("M", 3, 3)], n_frames=2), n_frames=2)
    silent = phone_steps([("AA", 0, 2)], n_frames=2, silent=np.array([True, False, False, False]))
    assert silent[7, 0] == 1 and silent[8, aa] == 0.5
    assert win.shape == (2, 16, 40)
    # window i = steps 2i-7 .. 2i+8: frame 0's own steps (0, 1) sit at positions 7, 8
    assert win[0, 7, aa] == 1 and win[0, 8, m] == 0.5 and win[1, 5, aa] == 1


def test_phones_of_real_speech_follow_its_loudness(tmp_path):
    """The committed demo speech ("Hello, and welcome to this short demonstration..."): the
    decoder finds phones in the speech and silence in the pauses, frame by frame."""
    from ernerf_core.audio.phones import PHONES
    from ernerf_core.demo.speech import DEMO_SPEECH

    feats, manifest = run(tmp_path, DEMO_SPEECH, backend="phones", wav=True)
    n = manifest["frames"]
    assert feats.shape == (n, 16, 40) and manifest["backend"] == "phones"
    assert np.allclose(feats.sum(2), 1) and manifest["phones_decoded"] > 100
    assert manifest["window"]["channels"] == list(PHONES)
    wav, _ = sf.read(tmp_path / "f.wav")
    rms_db = 10 * np.log10((wav.reshape(n, 640) ** 2).mean(axis=1) + 1e-10)
    silence = feats[:, 7:9, 0].mean(1)  # the frame's own two steps
    assert np.corrcoef(rms_db, silence)[0, 1] < -0.6
    # vowels carry the loud frames
    vowels = [PHONES.index(p) for p in ("AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW",
                                        "OY", "UH", "UW")]
    vowel_share = feats[:, 7:9, vowels].sum(2).mean(1)
    assert rms_db[vowel_share > 0.5].mean() > rms_db[silence > 0.5].mean() + 20


def test_mel_phones_is_mel_then_phones_and_silence_warns(tmp_path, caplog):
    from ernerf_core.demo.speech import DEMO_SPEECH

    mel, _ = run(tmp_path, DEMO_SPEECH, name="m")
    phones, _ = run(tmp_path, DEMO_SPEECH, backend="phones", name="p")
    both, manifest = run(tmp_path, DEMO_SPEECH, backend="mel_phones", name="b")
    assert manifest["backend"] == "mel_phones" and both.shape[2] == 120
    assert np.array_equal(both[..., :80], mel) and np.array_equal(both[..., 80:], phones)
    quiet = write_signal(tmp_path / "quiet.wav", np.zeros((SR, 1), np.float32), SR)
    feats, manifest = run(tmp_path, quiet, backend="phones", name="q")
    assert (feats[..., 0] == 1).all() and "no phone decoded" in manifest["warning"]
    assert "found no phone" in caplog.text


def test_phones_refuses_a_folder_that_is_no_acoustic_model(tmp_path):
    from ernerf_core.demo.speech import DEMO_SPEECH

    with pytest.raises(StageError, match="is not a PocketSphinx acoustic model"):
        run(tmp_path, DEMO_SPEECH, backend="phones", checkpoint=str(tmp_path))
