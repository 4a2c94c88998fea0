"""An exactly invertible constant-Q transform: the painless non-stationary Gabor frame.

Velasco, Holighaus, Dörfler and Grill 2011 ("Constructing an invertible constant-Q transform
with non-stationary Gabor frames"), in the form CQT-Diff uses it (DESIGN §6.2):

1. `X = FFT(x)` of the whole segment (length N).
2. Band k multiplies X by a Hann window `g_k` of `L_k` FFT bins around its centre `ν_k`
   (log-spaced centres, plus a DC low-pass and a Nyquist high-pass window so that the windows
   cover every frequency), moves it to base band and takes an inverse FFT of length `M_k ≥ L_k`:
   `c_k[m] = IFFT_{M_k}(X[ν_k + l]·g_k[l])[m]`, one complex time series per band.
3. Because `M_k ≥ L_k` (the "painless" case) the frame operator is diagonal in frequency,
   `S(ω) = Σ_j |g_j(ω)|²` over all windows and their negative-frequency mirrors, so the dual
   windows `g̃_k = g_k / S` give the exact inverse `X = Σ_k g̃_k · FFT_{M_k}(c_k)`. (The paper
   writes `g_k / Σ_j M_j|g_j|²` for coefficients without the 1/M_k of the inverse FFT; we keep
   the 1/M_k, as CQT-Diff's nsgt code does, so that coefficients of a unit signal stay of order
   one. With equal M_k, as in the matrix layout, the two are the same canonical dual.)

The signal is real, so only the non-negative-frequency windows are kept; the mirrored bands are
the complex conjugates and enter the inverse as `2·Re(·)`.

Band layout (CQT-Diff's nsgt `LogScale` grid): `K = num_octaves·bins_per_octave` centres spaced
log-uniformly from `fmin = fmax/2^num_octaves` to `fmax` inclusive; band k's Hann window spans
from its lower to its upper neighbour on that grid, `L_k = round(ν_{k+1} − ν_{k−1})` FFT bins
(at least 4), with the grid continued one step below fmin and ending at Nyquist (ν = N/2) above
the top band. When `fmax` is the Nyquist frequency the top band would sit on the Nyquist window,
so (as in nsgt) it is centred halfway between its lower neighbour and Nyquist. The Nyquist
window is a Hann window reaching down to the top band's centre; the DC window is a flat-top
low-pass that hands over to band 0 (the two sum to one between band 0's lower edge and centre).
Where this departs from nsgt (whose lowest band stretches from DC to band 1, 259 bins at the
reference, and whose Nyquist window shrinks to 4 bins, leaving `S` at 1e-7 next to Nyquist),
the shapes are unchanged: at 22.05 kHz, 65,536 samples, 7 octaves of 64 bins it gives CQT-Diff's
450 rows (DC + 448 bands + Nyquist) and a longest window of 704 bins.

Layouts:
- `"matrix"`: every band zero-padded in frequency to the longest window, complex
  `[..., rows, M]` (CQT-Diff's input; 9.67× redundant at the reference setting).
- `"octave"`: each octave its own time resolution (CQT-Diff+/BABE), a tuple
  `(dc [..., 1, M_dc], octave_0 [..., B, M_0], ..., octave_{O−1} [..., B, M_{O−1}],
  nyquist [..., 1, M_nyq])`, with each `M` the group's longest window rounded up to a
  2·3·5-smooth FFT length.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

LAYOUTS = ("matrix", "octave")
_MIN_WINDOW = 4  # nsgt's smallest window, in FFT bins


def _next_smooth(n: int, multiple: int = 1) -> int:
    """Returns the smallest multiple of `multiple` that is ≥ n and has no prime factor above 5."""
    m = -(-n // multiple) * multiple
    while True:
        r = m
        for p in (2, 3, 5):
            while r % p == 0:
                r //= p
        if r == 1:
            return m
        m += multiple


def _hann(offset: np.ndarray, length: int) -> np.ndarray:
    """Evaluates the periodic Hann window of `length` bins, centred at 0, at integer offsets.

    The support is `−⌊L/2⌋ … L − ⌊L/2⌋ − 1` (nsgt's placement); the window is 0 outside it.
    """
    inside = (offset >= -(length // 2)) & (offset <= length - length // 2 - 1)
    return np.where(inside, 0.5 + 0.5 * np.cos(2.0 * np.pi * offset / length), 0.0)


def _flat_top(offset: np.ndarray, plateau: float, edge: int) -> np.ndarray:
    """Evaluates a low-pass that is 1 for |offset| ≤ plateau and falls as cos² to 0 at edge.

    The fall is 1 minus the rising half of band 0's Hann window, which spans plateau … edge.
    """
    u = np.clip((np.abs(offset) - plateau) / (edge - plateau), 0.0, 1.0)
    return np.cos(0.5 * np.pi * u) ** 2


class CQT:
    """An invertible CQT of real signals of one fixed length (a painless NSGT frame).

    The windows and their duals are NumPy constants computed at construction; `forward` and
    `inverse` are pure `jnp` functions, safe under `jit`, `vmap` and `grad`, on `[..., T]`
    signals. float32 in gives complex64 coefficients; float64 (under `jax.enable_x64`) gives
    complex128.

    Attributes:
      frequencies: centre frequency of every row in Hz, [rows] (0 for DC, sr/2 for Nyquist).
      centre_bins: FFT bin at the centre of every row's window (frequencies rounded), [rows].
      window_lengths: support `L_k` of every row's window in FFT bins, [rows].
      frames: number of time frames `M` of every row, [rows].
      shape: `(rows, M)` for the matrix layout; a tuple of `(rows_g, M_g)` for the octave layout.
      redundancy: real coefficients per input sample (a complex coefficient counts as two).
    """

    def __init__(
        self,
        sample_rate: float,
        num_samples: int,
        num_octaves: int = 7,
        bins_per_octave: int = 64,
        fmax: float | None = None,
        layout: str = "matrix",
        frames_multiple: int = 1,
    ):
        """Builds the windows and dual windows.

        Args:
          sample_rate: sampling rate in Hz.
          num_samples: signal length N (even) that the transform is built for.
          num_octaves: octaves below `fmax`; `fmin = fmax / 2**num_octaves`.
          bins_per_octave: B; there are `num_octaves·B` log-spaced bands.
          fmax: highest centre frequency in Hz; None means the Nyquist frequency.
          layout: `"matrix"` or `"octave"` (see the module docstring).
          frames_multiple: round every `M` up to a multiple of this (e.g. 2^levels for a U-Net
            that halves the time axis); 1 keeps CQT-Diff's exact shape.
        """
        nyquist = sample_rate / 2
        fmax = nyquist if fmax is None else float(fmax)
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        if num_samples < 2 or num_samples % 2:
            raise ValueError(f"num_samples must be even and at least 2, got {num_samples}")
        if num_octaves < 1 or bins_per_octave < 1 or num_octaves * bins_per_octave < 2:
            raise ValueError(
                "need num_octaves >= 1, bins_per_octave >= 1 and at least 2 bands, got "
                f"num_octaves={num_octaves}, bins_per_octave={bins_per_octave}"
            )
        if not 0 < fmax <= nyquist:
            raise ValueError(
                f"fmax must be in (0, {nyquist}] Hz (the Nyquist frequency), got {fmax}"
            )
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        if frames_multiple < 1:
            raise ValueError(f"frames_multiple must be a positive integer, got {frames_multiple}")

        n = num_samples
        k_bands = num_octaves * bins_per_octave
        fmin = fmax / 2**num_octaves
        f = fmin * (fmax / fmin) ** (np.arange(k_bands) / (k_bands - 1))  # [K] Hz
        nu = f * n / sample_rate  # centres in FFT bins
        q = np.concatenate([[0.0], nu, [n / 2]])  # DC, bands, Nyquist: [rows]
        rows = k_bands + 2

        centre_nu = q.copy()
        if math.isclose(fmax, nyquist):
            # The top band would coincide with the Nyquist window: move it halfway down.
            centre_nu[-2] = (q[-3] + n / 2) / 2
        centres = np.round(centre_nu).astype(np.int64)
        if np.any(np.diff(centres) <= 0):
            min_gap = fmin * (2 ** (num_octaves / (k_bands - 1)) - 1)  # Hz between bands 0, 1
            raise ValueError(
                f"num_samples={n} is too short for {bins_per_octave} bins per octave from "
                f"{fmin:.2f} Hz: neighbouring bands fall in the same FFT bin; use at least "
                f"about {2 * math.ceil(sample_rate / min_gap / 2)} samples, fewer bins or octaves"
            )
        # Band supports span the neighbours on the log grid, continued one step below fmin
        # (before re-centring, as nsgt); the DC and Nyquist windows reach the nearest band centre.
        ratio = (fmax / fmin) ** (1 / (k_bands - 1))
        below = np.concatenate([[nu[0] / ratio], q[1:]])
        lengths = np.empty(rows)
        lengths[0] = 2 * centres[1]
        lengths[1:-1] = q[2:] - below[:-2]
        lengths[-1] = 2 * (n / 2 - centre_nu[-2])
        lengths = np.maximum(np.round(lengths), _MIN_WINDOW).astype(np.int64)
        # The DC low-pass is flat up to band 0's lower edge, then band 0's complement.
        dc_plateau = max(centres[1] - lengths[1] / 2, 0.0)

        if layout == "matrix":
            m_all = -(-int(lengths.max()) // frames_multiple) * frames_multiple
            groups = [(0, rows, m_all)]
        else:
            groups = [(0, 1, _next_smooth(int(lengths[0]), frames_multiple))]
            for o in range(num_octaves):
                start, stop = 1 + o * bins_per_octave, 1 + (o + 1) * bins_per_octave
                m_o = _next_smooth(int(lengths[start:stop].max()), frames_multiple)
                groups.append((start, stop, m_o))
            groups.append((rows - 1, rows, _next_smooth(int(lengths[-1]), frames_multiple)))

        # Flat tables over all (row, frame) entries, group by group, row-major.
        idx, win, is_band = [], [], []
        for start, stop, m in groups:
            offset = (np.arange(m) + m // 2) % m - m // 2  # frame m ↔ bin centre + offset
            for r in range(start, stop):
                idx.append((centres[r] + offset) % n)
                if r == 0:
                    win.append(_flat_top(offset, dc_plateau, int(centres[1])))
                else:
                    win.append(_hann(offset, int(lengths[r])))
                is_band.append(np.full(m, 0 < r < rows - 1))
        idx, win, is_band = np.concatenate(idx), np.concatenate(win), np.concatenate(is_band)

        # Diagonal frame operator over all N bins: every window plus the bands' mirrors.
        s = np.zeros(n)
        np.add.at(s, idx, win**2)
        np.add.at(s, (-idx[is_band]) % n, win[is_band] ** 2)
        if s.min() <= 1e-6 * s.max():
            raise ValueError(f"the windows leave FFT bins uncovered (min S = {s.min():.2e})")
        # Dual windows, doubled for the bands whose negative-frequency mirror is implicit.
        dual = win / s[idx] * np.where(is_band, 2.0, 1.0)

        self.sample_rate = float(sample_rate)
        self.num_samples = n
        self.num_octaves = num_octaves
        self.bins_per_octave = bins_per_octave
        self.fmax = fmax
        self.layout = layout
        self.frequencies = centre_nu * sample_rate / n
        self.centre_bins = centres
        self.window_lengths = lengths
        self.frames = np.concatenate([np.full(b - a, m) for a, b, m in groups])
        self._groups = tuple(groups)
        self._idx = idx.astype(np.int32)
        self._win = win
        self._dual = dual

    @property
    def num_rows(self) -> int:
        """Returns the number of rows: DC, the bands, Nyquist."""
        return len(self.frequencies)

    @property
    def shape(self) -> tuple[int, int] | tuple[tuple[int, int], ...]:
        """Returns the coefficient shape(s) without leading batch axes."""
        shapes = tuple((b - a, m) for a, b, m in self._groups)
        return shapes[0] if self.layout == "matrix" else shapes

    @property
    def redundancy(self) -> float:
        """Returns real coefficients per input sample (complex counts as two)."""
        return 2.0 * float(self.frames.sum()) / self.num_samples

    def forward(self, x: ArrayLike) -> jax.Array | tuple[jax.Array, ...]:
        """Returns the CQT coefficients of real signals `x` of shape [..., T].

        Matrix layout: complex [..., rows, M]. Octave layout: a tuple of complex
        [..., rows_g, M_g] arrays (DC, the octaves from low to high, Nyquist).
        """
        x = jnp.asarray(x)
        if jnp.iscomplexobj(x):
            raise ValueError("the CQT is built for real signals; got a complex input")
        if x.ndim < 1 or x.shape[-1] != self.num_samples:
            raise ValueError(
                f"expected signals of shape [..., {self.num_samples}], got {x.shape}; build "
                "a CQT for this length"
            )
        if not jnp.issubdtype(x.dtype, jnp.floating):
            x = x.astype(jnp.float32)
        spectrum = jnp.fft.fft(x)  # [..., N]
        lead = x.shape[:-1]
        win = jnp.asarray(self._win, x.dtype).reshape((1,) * len(lead) + (-1,))
        entries = spectrum[..., self._idx] * win  # [..., total]
        coeffs, offset = [], 0
        for start, stop, m in self._groups:
            size = (stop - start) * m
            block = entries[..., offset : offset + size].reshape(lead + (stop - start, m))
            coeffs.append(jnp.fft.ifft(block, axis=-1))  # [..., rows_g, M_g]
            offset += size
        return coeffs[0] if self.layout == "matrix" else tuple(coeffs)

    def inverse(self, coeffs: ArrayLike | tuple[ArrayLike, ...]) -> jax.Array:
        """Returns the real signal [..., T] whose CQT is `coeffs` (exact for `forward`'s output).

        Coefficients that are no CQT of any signal (a network's output) are synthesised with
        the dual windows; in the matrix layout that is the canonical dual, i.e. the least-squares
        fit to `coeffs` together with their negative-frequency mirrors.
        """
        blocks = (coeffs,) if self.layout == "matrix" else tuple(coeffs)
        if len(blocks) != len(self._groups):
            raise ValueError(
                f"expected {len(self._groups)} coefficient arrays for the {self.layout!r} "
                f"layout, got {len(blocks)}"
            )
        blocks = [jnp.asarray(c) for c in blocks]
        lead = blocks[0].shape[:-2]
        for c, (start, stop, m) in zip(blocks, self._groups, strict=True):
            if c.shape != lead + (stop - start, m):
                raise ValueError(
                    f"expected coefficients of shape [..., {stop - start}, {m}], got {c.shape}"
                )
        if not jnp.iscomplexobj(blocks[0]):
            blocks = [c.astype(jnp.result_type(c.dtype, jnp.complex64)) for c in blocks]
        real_dtype = jnp.finfo(blocks[0].dtype).dtype
        dual = jnp.asarray(self._dual, real_dtype).reshape((1,) * len(lead) + (-1,))
        entries = jnp.concatenate(
            [jnp.fft.fft(c, axis=-1).reshape(lead + (-1,)) for c in blocks], axis=-1
        )
        spectrum = jnp.zeros(lead + (self.num_samples,), blocks[0].dtype)
        spectrum = spectrum.at[..., self._idx].add(entries * dual)  # overlap-add in frequency
        return jnp.real(jnp.fft.ifft(spectrum))


@functools.lru_cache(maxsize=32)
def cached_cqt(
    sample_rate: float,
    num_samples: int,
    num_octaves: int,
    bins_per_octave: int,
    fmax: float | None = None,
    layout: str = "matrix",
    frames_multiple: int = 1,
) -> CQT:
    """Returns a shared `CQT` for these settings (building the tables once per setting)."""
    return CQT(
        sample_rate, num_samples, num_octaves, bins_per_octave, fmax, layout, frames_multiple
    )
