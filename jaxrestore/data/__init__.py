"""Training and evaluation data: the dataset readers and the procedural singing voice (DESIGN §8).

Every dataset has the same small interface: `.files` (the recordings, each tagged with its split
and as dry or wet), `.split(name)` ("train", "validation" or "test") and
`.segment(key_or_seed, num_samples)`, a float32 mono segment [num_samples] at 22,050 Hz.
`synthetic_clip(seed, num_samples, wet)` is the embedded default that needs no download.
"""

from jaxrestore.data.readers import (
    SAMPLE_RATE,
    SPLITS,
    AudioDataset,
    AudioItem,
    as_seed,
    audio_folder,
    hash_split,
    musdb18,
    musdb18hq,
    nhss,
    nus48e,
    open_dataset,
)
from jaxrestore.data.synthetic import (
    Note,
    Singer,
    SyntheticVocals,
    apply_reverb,
    reverb_ir,
    sing,
    sing_notes,
    synthetic_clip,
)

__all__ = [
    "SAMPLE_RATE",
    "SPLITS",
    "AudioDataset",
    "AudioItem",
    "Note",
    "Singer",
    "SyntheticVocals",
    "apply_reverb",
    "as_seed",
    "audio_folder",
    "hash_split",
    "musdb18",
    "musdb18hq",
    "nhss",
    "nus48e",
    "open_dataset",
    "reverb_ir",
    "sing",
    "sing_notes",
    "synthetic_clip",
]
