"""Audio files in and out: read anything soundfile reads, resample, mix to mono, write atomically.

Arrays here are NumPy float32 laid out channels-first, `[C, T]`. Reading checks what it got
(a real audio file, at least one sample, only finite values) and says which file was wrong and
why in one line, as an `AudioError`. Writing goes through a temporary file in the target's own
folder and `os.replace`, so a crash never leaves a half-written file under the final name;
`AudioWriter` does the same for a recording written block by block.
"""

import math
import os
import uuid

import numpy as np
import soundfile as sf
from numpy.typing import ArrayLike
from scipy import signal

# libsndfile picks the container from these; anything else is refused before writing.
_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".mp3": "MP3"}


class AudioError(ValueError):
    """A file that cannot be used as audio: missing, not audio, empty or not finite."""


def read_audio(path: str | os.PathLike, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Reads an audio file as float32 `[C, T]`, resampled to `sample_rate` when one is given.

    Args:
      path: any file libsndfile decodes (WAV, FLAC, OGG, MP3, ...), any rate and channel count.
      sample_rate: the rate to return; None keeps the file's own.

    Returns:
      `(audio, rate)`: `audio` of shape [C, T] in float32 and the rate it is at.

    Raises:
      AudioError: the file is missing, is not audio, holds no samples or holds NaN/Inf.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise AudioError(f"{path}: no such file")
    if os.path.isdir(path):
        raise AudioError(f"{path}: is a folder, expected an audio file")
    if os.path.getsize(path) == 0:
        raise AudioError(f"{path}: empty file (0 bytes)")
    try:
        frames, rate = sf.read(path, dtype="float32", always_2d=True)  # [T, C]
    except (sf.LibsndfileError, RuntimeError) as error:
        reason = " ".join(str(error).split())
        raise AudioError(f"{path}: not a readable audio file ({reason})") from None
    if frames.shape[0] == 0:
        raise AudioError(f"{path}: the file holds no samples")
    bad = np.count_nonzero(~np.isfinite(frames))
    if bad:
        raise AudioError(f"{path}: NaN or Inf in {bad} of {frames.size} samples")
    audio = np.ascontiguousarray(frames.T)  # [C, T]
    if sample_rate is not None and sample_rate != rate:
        audio = resample(audio, rate, sample_rate)
        rate = sample_rate
    return audio, int(rate)


def to_mono(audio: ArrayLike) -> np.ndarray:
    """Mixes `[C, T]` audio down to `[T]` by averaging the channels; `[T]` passes through."""
    audio = np.asarray(audio, np.float32)
    if audio.ndim == 1:
        return audio
    if audio.ndim != 2 or audio.shape[0] == 0:
        raise ValueError(f"expected audio of shape [C, T] or [T], got shape {audio.shape}")
    return audio.mean(axis=0)


def resample(audio: ArrayLike, rate_in: int, rate_out: int) -> np.ndarray:
    """Resamples along the last axis by polyphase filtering at the reduced ratio `rate_out/rate_in`.

    The output has `ceil(T·rate_out/rate_in)` samples (scipy's `resample_poly` convention).
    """
    if rate_in <= 0 or rate_out <= 0:
        raise ValueError(f"sample rates must be positive, got {rate_in} and {rate_out}")
    audio = np.asarray(audio, np.float32)
    if rate_in == rate_out:
        return audio
    divisor = math.gcd(int(rate_in), int(rate_out))
    up, down = int(rate_out) // divisor, int(rate_in) // divisor
    return signal.resample_poly(audio, up, down, axis=-1).astype(np.float32)


def write_audio(
    path: str | os.PathLike,
    audio: ArrayLike,
    sample_rate: int,
    subtype: str = "PCM_24",
    overwrite: bool = False,
) -> None:
    """Writes `[C, T]` or `[T]` audio atomically: a temporary file beside `path`, then a rename.

    Integer subtypes (the default 24-bit PCM) clip values outside [−1, 1]; "FLOAT" keeps them.

    Raises:
      AudioError: `path` exists and `overwrite` is False, or the audio holds NaN/Inf.
      ValueError: an unknown extension, an empty or badly shaped array, a bad rate.
    """
    path = os.fspath(path)
    extension = os.path.splitext(path)[1].lower()
    if extension not in _FORMATS:
        raise ValueError(
            f"{path}: unknown audio extension {extension!r}, use one of {list(_FORMATS)}"
        )
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    audio = np.asarray(audio, np.float32)
    if audio.ndim == 1:
        audio = audio[None]
    if audio.ndim != 2 or audio.shape[1] == 0:
        raise ValueError(f"expected non-empty audio of shape [C, T] or [T], got {audio.shape}")
    if not np.all(np.isfinite(audio)):
        raise AudioError(f"{path}: refusing to write NaN or Inf samples")
    if os.path.exists(path) and not overwrite:
        raise AudioError(f"{path}: already exists; pass overwrite=True to replace it")
    # A unique name in the same folder (so the rename cannot cross file systems); libsndfile
    # creates it with the usual permissions, which mkstemp's 0600 would not give.
    folder, name = os.path.split(os.path.abspath(path))
    temporary = os.path.join(folder, f".{name}.{uuid.uuid4().hex[:12]}.tmp{extension}")
    try:
        sf.write(temporary, audio.T, sample_rate, subtype=subtype, format=_FORMATS[extension])
        os.replace(temporary, path)
    except BaseException:
        # Whatever failed (a bad subtype, a full disk, an interrupt), the final name is untouched.
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


class AudioWriter:
    """Writes a recording block by block, atomically: a temporary file beside `path`, renamed
    to `path` only when the `with` block ends without an error (else removed).

        with AudioWriter("out.wav", 48000, channels=2, subtype="FLOAT") as out:
            for block in blocks:  # [C, n] each
                out.write(block)

    Raises:
      AudioError: `path` exists and `overwrite` is False, or a block holds NaN/Inf.
      ValueError: an unknown extension or a bad rate.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        sample_rate: int,
        channels: int,
        subtype: str = "PCM_24",
        overwrite: bool = False,
    ):
        self.path = os.fspath(path)
        self.extension = os.path.splitext(self.path)[1].lower()
        if self.extension not in _FORMATS:
            raise ValueError(
                f"{self.path}: unknown audio extension {self.extension!r}, "
                f"use one of {list(_FORMATS)}"
            )
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        if os.path.exists(self.path) and not overwrite:
            raise AudioError(f"{self.path}: already exists; pass overwrite=True to replace it")
        self.sample_rate, self.channels, self.subtype = sample_rate, channels, subtype
        self.peak = 0.0  # the largest |sample| written
        self._file = None

    def __enter__(self) -> "AudioWriter":
        folder, name = os.path.split(os.path.abspath(self.path))
        self._temporary = os.path.join(
            folder, f".{name}.{uuid.uuid4().hex[:12]}.tmp{self.extension}"
        )
        self._file = sf.SoundFile(
            self._temporary,
            "w",
            self.sample_rate,
            self.channels,
            self.subtype,
            format=_FORMATS[self.extension],
        )
        return self

    def write(self, block: ArrayLike) -> None:
        """Appends a block [C, n] (or [n] for one channel)."""
        block = np.asarray(block, np.float32)
        block = block[None] if block.ndim == 1 else block
        if not np.all(np.isfinite(block)):
            raise AudioError(f"{self.path}: refusing to write NaN or Inf samples")
        self.peak = max(self.peak, float(np.max(np.abs(block), initial=0.0)))
        self._file.write(block.T)

    def __exit__(self, kind, error, traceback) -> None:
        self._file.close()
        if kind is None:
            os.replace(self._temporary, self.path)
        elif os.path.exists(self._temporary):
            os.remove(self._temporary)
