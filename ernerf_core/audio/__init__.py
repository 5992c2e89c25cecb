"""Audio features: any audio -> per-frame windows for ER-NeRF's audio network.

Backends (one module each): ``mel`` (default, no weights), ``phones`` and ``mel_phones``
(PocketSphinx, its bundled model), ``hubert``, ``wav2vec``
(transformers, local weights only), ``deepspeech`` (TensorFlow, optional). Frame timing and
windowing shared by all of them: ``windows``.
"""

from .cli import add_cli
from .compat import check_compatible
from .features import AUDIO_FEATURE_FILE, extract_features
from .windows import fit_to_frames, frame_count

__all__ = ["AUDIO_FEATURE_FILE", "add_cli", "check_compatible", "extract_features", "fit_to_frames",
           "frame_count"]
