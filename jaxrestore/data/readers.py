"""Readers for the vocal datasets' folder layouts (DESIGN §8), as datasets of training segments.

Every reader returns an `AudioDataset`: the list of usable files, each tagged with its split and
as dry or wet, that decodes them to mono at 22,050 Hz (by default) on first use and keeps a few in
a small cache. Layouts:

- NUS-48E: `<singer>/sing/*.wav` (the `read/` speech beside it is ignored); dry.
- NHSS: `<singer>/<song>/song.wav` (the `speech.wav` beside it is ignored); dry.
- MUSDB18-HQ: `{train,test}/<track>/vocals.wav`, stereo 44.1 kHz; wet (the mix's effects).
- MUSDB18 stems: `{train,test}/<track>.stem.mp4` through the `musdb` package; wet.
- A folder: every .wav/.flac/.ogg/.mp3 below it; dry or wet as the caller says.

Splits are deterministic: a file's split comes from a hash of its path relative to the dataset
root, so it does not depend on the order files are listed in or on which other files exist.
MUSDB's own `test` folder is the test split; its `train` folder is hashed into train and
validation.
"""

import collections
import dataclasses
import hashlib
import os
from collections.abc import Callable, Sequence

import jax
import numpy as np

from jaxrestore import audio as audio_io

SPLITS = ("train", "validation", "test")
SAMPLE_RATE = 22050
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)  # train, validation, test

_LAYOUTS = (
    "NUS-48E <singer>/sing/*.wav, NHSS <singer>/<song>/song.wav, "
    "MUSDB18-HQ {train,test}/<track>/vocals.wav, MUSDB18 {train,test}/<track>.stem.mp4, "
    f"or any folder holding {'/'.join(AUDIO_EXTENSIONS)} files"
)


@dataclasses.dataclass(frozen=True)
class AudioItem:
    """One recording of a dataset.

    Attributes:
      path: the file (or, for MUSDB18 stems, the track's `.stem.mp4`).
      key: its path relative to the dataset root, with "/" separators: what the split hashes.
      split: "train", "validation" or "test".
      wet: True when the recording carries reverberation and effects.
    """

    path: str
    key: str
    split: str
    wet: bool


def as_seed(key_or_seed) -> int:
    """Turns an int, a NumPy Generator or a JAX PRNG key into a non-negative int seed."""
    if isinstance(key_or_seed, bool):
        raise ValueError("expected an int seed, a numpy Generator or a JAX key, got a bool")
    if isinstance(key_or_seed, int | np.integer):
        if key_or_seed < 0:
            raise ValueError(f"seed must be non-negative, got {key_or_seed}")
        return int(key_or_seed)
    if isinstance(key_or_seed, np.random.Generator):
        return int(key_or_seed.integers(2**63))
    try:
        words = np.asarray(key_or_seed)
    except TypeError:
        # A typed JAX key (jax.random.key) refuses np.asarray; its raw words are key_data.
        words = np.asarray(jax.random.key_data(key_or_seed))
    if words.size == 0 or not np.issubdtype(words.dtype, np.integer):
        raise ValueError(
            "expected an int seed, a numpy Generator or a JAX key, "
            f"got {type(key_or_seed).__name__}"
        )
    words = words.astype(np.uint64).ravel().tolist()
    return int(np.random.SeedSequence(words).generate_state(1, np.uint64)[0] >> np.uint64(1))


def hash_split(key: str, fractions: Sequence[float] = DEFAULT_FRACTIONS) -> str:
    """Assigns `key` to "train", "validation" or "test" by a SHA-256 hash of the key.

    The hash maps the key to u ∈ [0, 1): test when u < f_test, validation when
    u < f_test + f_validation, train otherwise.
    """
    train, validation, test = _check_fractions(fractions)
    u = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") / 2.0**64
    if u < test:
        return "test"
    return "validation" if u < test + validation else "train"


class AudioDataset:
    """Recordings of one dataset, decoded on use to mono at `sample_rate`, with a small cache.

    Args:
      root: the dataset folder (for messages).
      items: the recordings.
      sample_rate: rate the audio is decoded to.
      decode: reads an item as (`[C, T]` audio, its rate); by default `jaxrestore.audio.read_audio`
        on the item's path.
      cache_size: how many decoded recordings to keep (least recently used go first).
      name: the layout, for messages.
    """

    def __init__(
        self,
        root: str,
        items: Sequence[AudioItem],
        sample_rate: int = SAMPLE_RATE,
        decode: Callable[[AudioItem], tuple[np.ndarray, int]] | None = None,
        cache_size: int = 8,
        name: str = "audio",
        _cache: collections.OrderedDict | None = None,
    ):
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        self.root = root
        self.files = tuple(sorted(items, key=lambda item: item.key))
        self.sample_rate = sample_rate
        self.name = name
        self.cache_size = cache_size
        self._decode = decode or (lambda item: audio_io.read_audio(item.path))
        self._cache = collections.OrderedDict() if _cache is None else _cache

    def __len__(self) -> int:
        return len(self.files)

    def __repr__(self) -> str:
        return f"AudioDataset({self.name}, {self.root!r}, {len(self.files)} files)"

    def split(self, name: str) -> "AudioDataset":
        """Returns the files in split `name` ("train", "validation" or "test"); shares the cache."""
        if name not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {name!r}")
        items = [item for item in self.files if item.split == name]
        return AudioDataset(
            self.root,
            items,
            self.sample_rate,
            self._decode,
            self.cache_size,
            self.name,
            self._cache,
        )

    def load(self, item: AudioItem) -> np.ndarray:
        """Returns the recording as float32 mono `[T]` at the dataset's rate (cached)."""
        cached = self._cache.get(item.path)
        if cached is not None:
            self._cache.move_to_end(item.path)
            return cached[0]
        audio, rate = self._decode(item)
        audio = audio_io.resample(audio_io.to_mono(audio), rate, self.sample_rate)
        rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
        self._cache[item.path] = (audio, rms)
        while len(self._cache) > max(self.cache_size, 1):
            self._cache.popitem(last=False)
        return audio

    def segment(
        self,
        key_or_seed,
        num_samples: int,
        min_relative_rms: float = 0.1,
        attempts: int = 10,
    ) -> np.ndarray:
        """Draws a training segment [num_samples] that is not silence.

        A file is picked uniformly, then a start uniformly; a segment whose RMS is below
        `min_relative_rms` times the file's RMS (−20 dB by default) is drawn again, up to
        `attempts` times, and the loudest one drawn is kept. Files shorter than `num_samples`
        are returned whole, zero-padded at the end.

        Args:
          key_or_seed: an int seed, a NumPy Generator or a JAX key; the same seed gives the
            same segment.
          num_samples: segment length.
          min_relative_rms: the silence threshold relative to the file's RMS.
          attempts: how many segments to try.
        """
        if not self.files:
            raise ValueError(f"{self.root}: this {self.name} dataset (or split) holds no files")
        if num_samples < 1 or attempts < 1:
            raise ValueError(
                f"num_samples and attempts must be positive, got {num_samples}, {attempts}"
            )
        rng = np.random.default_rng(as_seed(key_or_seed))
        item = self.files[int(rng.integers(len(self.files)))]
        audio = self.load(item)
        if audio.size <= num_samples:
            return np.pad(audio, (0, num_samples - audio.size))
        threshold = min_relative_rms * self._cache[item.path][1]
        best, best_rms = None, -1.0
        for _ in range(attempts):
            start = int(rng.integers(audio.size - num_samples + 1))
            candidate = audio[start : start + num_samples]
            rms = float(np.sqrt(np.mean(np.square(candidate, dtype=np.float64))))
            if rms > best_rms:
                best, best_rms = candidate, rms
            if rms >= threshold:
                break
        return best.copy()


def nus48e(
    root: str | os.PathLike,
    sample_rate: int = SAMPLE_RATE,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
) -> AudioDataset:
    """Reads NUS-48E: the sung recordings `<singer>/sing/*.wav` (dry)."""
    root = _check_root(root)
    paths = [path for path in _walk(root) if _is_nus48e(_parts(root, path))]
    return _dataset(root, paths, False, sample_rate, fractions, "NUS-48E", "<singer>/sing/*.wav")


def nhss(
    root: str | os.PathLike,
    sample_rate: int = SAMPLE_RATE,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
) -> AudioDataset:
    """Reads NHSS: the songs `<singer>/<song>/song.wav` (dry); `speech.wav` is left out."""
    root = _check_root(root)
    paths = [path for path in _walk(root) if _is_nhss(_parts(root, path))]
    return _dataset(root, paths, False, sample_rate, fractions, "NHSS", "<singer>/<song>/song.wav")


def musdb18hq(
    root: str | os.PathLike,
    sample_rate: int = SAMPLE_RATE,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
) -> AudioDataset:
    """Reads MUSDB18-HQ vocal stems `{train,test}/<track>/vocals.wav` (wet).

    `test/` is the test split; `train/` tracks go to validation or train by hash, in the
    proportion of the validation and train fractions.
    """
    root = _check_root(root)
    items = []
    for path in _walk(root):
        parts = _parts(root, path)
        if _is_musdb18hq(parts):
            items.append(_musdb_item(path, "/".join(parts), parts[0], fractions))
    if not items:
        raise _layout_error(root, "MUSDB18-HQ", "{train,test}/<track>/vocals.wav")
    return AudioDataset(root, items, sample_rate, name="MUSDB18-HQ")


def musdb18(
    root: str | os.PathLike,
    sample_rate: int = SAMPLE_RATE,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
) -> AudioDataset:
    """Reads the vocal stems of MUSDB18 (`{train,test}/<track>.stem.mp4`) with `musdb` (wet)."""
    root = _check_root(root)
    try:
        import musdb  # an optional dependency, imported only here
    except ImportError:
        raise ValueError(
            f"{root}: reading MUSDB18 stems (.stem.mp4) needs the 'musdb' package "
            "(pip install musdb, which also needs ffmpeg); or convert to MUSDB18-HQ wav "
            "folders and use musdb18hq()"
        ) from None
    database = musdb.DB(root=root, subsets=["train", "test"], is_wav=False)
    tracks, items = {}, []
    for track in database.tracks:
        path = os.path.abspath(str(track.path))
        tracks[path] = track
        key = f"{track.subset}/{track.name}"
        items.append(_musdb_item(path, key, track.subset, fractions))
    if not items:
        raise _layout_error(root, "MUSDB18", "{train,test}/<track>.stem.mp4")

    def decode(item: AudioItem) -> tuple[np.ndarray, int]:
        track = tracks[item.path]
        vocals = np.asarray(track.targets["vocals"].audio, np.float32)  # [T, C]
        return vocals.T, int(track.rate)

    return AudioDataset(root, items, sample_rate, decode, name="MUSDB18")


def audio_folder(
    root: str | os.PathLike,
    wet: bool,
    sample_rate: int = SAMPLE_RATE,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
) -> AudioDataset:
    """Reads every .wav/.flac/.ogg/.mp3 file below `root` (recursively), all dry or all wet."""
    root = _check_root(root)
    paths = [path for path in _walk(root) if path.lower().endswith(AUDIO_EXTENSIONS)]
    return _dataset(root, paths, wet, sample_rate, fractions, "folder", "audio files")


def open_dataset(
    root: str | os.PathLike,
    wet: bool | None = None,
    sample_rate: int = SAMPLE_RATE,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
) -> AudioDataset:
    """Recognises the layout under `root` and reads it.

    Tried in order: MUSDB18-HQ, NHSS, NUS-48E, MUSDB18 stems, then any folder of audio files
    (which needs `wet`, since a bare folder cannot say).
    """
    root = _check_root(root)
    relative = [_parts(root, path) for path in _walk(root)]
    if any(map(_is_musdb18hq, relative)):
        return musdb18hq(root, sample_rate, fractions)
    if any(map(_is_nhss, relative)):
        return nhss(root, sample_rate, fractions)
    if any(map(_is_nus48e, relative)):
        return nus48e(root, sample_rate, fractions)
    if any(map(_is_musdb18_stem, relative)):
        return musdb18(root, sample_rate, fractions)
    if any(parts[-1].lower().endswith(AUDIO_EXTENSIONS) for parts in relative):
        if wet is None:
            raise ValueError(
                f"{root}: a plain folder of audio files; say whether it is wet or dry "
                "(wet=True or wet=False)"
            )
        return audio_folder(root, wet, sample_rate, fractions)
    raise ValueError(f"{root}: no known dataset layout or audio files; expected {_LAYOUTS}")


# ---------------------------------------------------------------------------------------------


def _check_root(root: str | os.PathLike) -> str:
    root = os.path.abspath(os.fspath(root))
    if not os.path.isdir(root):
        raise ValueError(f"{root}: not a folder; expected a dataset folder ({_LAYOUTS})")
    return root


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    if len(fractions) != 3 or min(fractions) < 0 or not np.isclose(sum(fractions), 1.0):
        raise ValueError(
            "fractions must be three non-negative numbers (train, validation, test) summing "
            f"to 1, got {fractions}"
        )
    return float(fractions[0]), float(fractions[1]), float(fractions[2])


def _walk(root: str) -> list[str]:
    """Lists the files below `root` (sorted), skipping hidden files and folders."""
    found = []
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        found += [os.path.join(folder, name) for name in sorted(names) if not name.startswith(".")]
    return found


def _parts(root: str, path: str) -> list[str]:
    return os.path.relpath(path, root).split(os.sep)


# Each layout as a test on a file's path relative to the dataset root, split at "/".
def _is_nus48e(parts: list[str]) -> bool:
    return len(parts) == 3 and parts[1] == "sing" and parts[2].lower().endswith(".wav")


def _is_nhss(parts: list[str]) -> bool:
    return len(parts) == 3 and parts[2] == "song.wav"


def _is_musdb18hq(parts: list[str]) -> bool:
    return len(parts) == 3 and parts[0] in ("train", "test") and parts[2] == "vocals.wav"


def _is_musdb18_stem(parts: list[str]) -> bool:
    return len(parts) == 2 and parts[0] in ("train", "test") and parts[1].endswith(".stem.mp4")


def _layout_error(root: str, name: str, layout: str) -> ValueError:
    return ValueError(f"{root}: no {name} recordings found; expected the layout {layout}")


def _dataset(
    root: str,
    paths: list[str],
    wet: bool,
    sample_rate: int,
    fractions: Sequence[float],
    name: str,
    layout: str,
) -> AudioDataset:
    if not paths:
        raise _layout_error(root, name, layout)
    items = []
    for path in paths:
        key = "/".join(_parts(root, path))
        items.append(AudioItem(path, key, hash_split(key, fractions), wet))
    return AudioDataset(root, items, sample_rate, name=name)


def _musdb_item(path: str, key: str, subset: str, fractions: Sequence[float]) -> AudioItem:
    train, validation, _ = _check_fractions(fractions)
    if subset == "test":
        return AudioItem(path, key, "test", True)
    # MUSDB's train folder splits into validation and train alone, in their proportion.
    share = validation / (train + validation) if train + validation > 0 else 0.0
    split = hash_split(key, (1.0 - share, share, 0.0))
    return AudioItem(path, key, split, True)
