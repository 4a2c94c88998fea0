"""SaShiMi-Diff: a 1-D U-Net of bidirectional S4D blocks, as the EDM raw network F_θ (DESIGN §6.1).

Goel, Gu, Donahue and Ré 2022, "It's raw! Audio generation with state-space models", in the
DiffWave form of albertfgu/diffwave-sashimi (its `Sashimi` with `unet=True`), with S4D in place
of the January-2022 S4 (same parameter count: S4's trainable C with its low-rank part is 2·N
reals per channel, S4D's complex C plus trainable A is also 2·N, plus one log Δ).

Layout: activations are [B, L, H] (channels last), so every 1×1 convolution is an `nn.Dense`.
The `n_layers` blocks of a stage run as one `nn.scan` (parameters stacked on a leading axis).

- Input: 1×1 conv 1 → H, ReLU (as the reference).
- U-Net: for each pooling factor p, `n_layers` residual blocks, then DownPool (H → H·expand,
  L → L/p); `n_layers` blocks in the centre; then mirrored: UpPool, `n_layers` blocks. Every
  block's input and every pool's input on the way down is kept and added back after the
  matching layer on the way up (SaShiMi's sequence U-Net).
- DownPool: reshape (L, H) → (L/p, p·H), 1×1 conv to H·expand. UpPool: 1×1 conv H → p·H/expand,
  reshape back to (L·p, H/expand). No causal shift: a diffusion denoiser is non-causal (the
  reference has the shift commented out too).
- Residual block: LayerNorm over channels → + Dense(noise embedding) → bidirectional S4D (2H)
  → GELU → Dense 2H → H → residual; LayerNorm → Dense H → ff·H, GELU, ff·H → H → residual.
  GELU is the exact (erf) one, as PyTorch's default. No dropout (the reference passes none).
- Noise embedding: fixed sinusoidal Fourier features of c_noise = ¼·ln σ (64 angular
  frequencies, log-spaced over [0.1, 100] per unit of c_noise: c_noise spans about 4 units for
  σ ∈ [1e-6, 10], so these resolve ~1 % steps of σ up to the whole range), cos and sin → 128,
  then Dense 512, SiLU, Dense 512, SiLU.
- Output: LayerNorm → 1×1 conv H → H → ReLU → zero-initialised 1×1 conv H → 1, so the untrained
  network returns exactly 0 and the preconditioned denoiser exactly `c_skip·x`.

Differences from the reference that change the parameter count slightly: LayerNorm with a
per-channel scale and bias (the reference's TransposedLN has one scalar each), no weight
normalisation on the 1×1 convolutions (it adds one gain per output channel), and a trainable
log Δ per direction.
"""

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxrestore.networks.s4 import CACHE, S4D


@dataclasses.dataclass(frozen=True)
class SaShiMiConfig:
    """Sizes of a SaShiMi-Diff network.

    Attributes:
      d_model: H, the channels of the outermost level.
      n_layers: residual blocks per level on the way down, in the centre, and on the way up.
      d_state: N, the S4D state size (N/2 complex modes per channel and direction).
      pool: pooling factor between consecutive levels; T must be a multiple of their product.
      expand: channel multiplier between consecutive levels.
      ff: feed-forward expansion inside each block (H → ff·H → H).
      embed_dims: noise embedding sizes: Fourier features, MLP hidden, MLP output.
      dt_min: lower end of the initial S4D step size Δ.
      dt_max: upper end of the initial S4D step size Δ.
      film: condition on the noise level by a per-channel scale and shift (FiLM) of every
        LayerNorm's output (both in each block, and the output's), from the noise embedding,
        instead of the reference's one additive bias before each S4D. A denoiser's gain in the
        bands where noise dominates must follow σ over four decades (`c_out·F ≈ −x` there, so
        F's gain is about σ_d/σ); a bias cannot express a gain, a scale can. Zero-initialised:
        the untrained network computes as without conditioning.
      remat: recompute each block's activations in the backward pass instead of storing them
        (`jax.checkpoint` inside the scan over a stage's blocks). On the CPU it is both leaner
        and faster: "reference" forward + VJP on 1 × 65,536 samples holds 1.1 GB of XLA
        temporaries instead of 7.8 GB and takes 35 s of CPU time instead of 40 s.
    """

    d_model: int = 64
    n_layers: int = 6
    d_state: int = 64
    pool: tuple[int, ...] = (4, 4)
    expand: int = 2
    ff: int = 2
    embed_dims: tuple[int, int, int] = (128, 512, 512)
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    film: bool = False
    remat: bool = True

    def __post_init__(self):
        # Lists (e.g. from an ml_collections ConfigDict) become tuples: the config stays hashable.
        object.__setattr__(self, "pool", tuple(self.pool))
        object.__setattr__(self, "embed_dims", tuple(self.embed_dims))
        if len(self.embed_dims) != 3:
            raise ValueError(
                f"embed_dims must be 3 sizes (features, hidden, output), got {self.embed_dims}"
            )
        for name in ("d_model", "n_layers", "expand", "ff"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.d_state < 2 or self.d_state % 2:
            raise ValueError(f"d_state must be an even number ≥ 2, got {self.d_state}")
        if any(p < 1 for p in self.pool):
            raise ValueError(f"pool factors must be positive integers, got {self.pool}")
        if self.embed_dims[0] < 2 or self.embed_dims[0] % 2:
            raise ValueError(f"embed_dims[0] must be even (cos and sin), got {self.embed_dims}")
        if not 0 < self.dt_min <= self.dt_max:
            raise ValueError(f"need 0 < dt_min <= dt_max, got {self.dt_min}, {self.dt_max}")

    @property
    def total_pool(self) -> int:
        """The product of the pooling factors: T must be a multiple of it."""
        return math.prod(self.pool)


CONFIGS = {
    # SaShiMi "small" of diffwave-sashimi (d_model 64, 6 layers per level, N = 64): 7.49 M.
    "reference": SaShiMiConfig(),
    # Trainable on a 2-core CPU, the shipped model: FiLM conditioning; 1.15 M parameters (most of
    # them in the noise embedding's MLP and the FiLM layers, which cost nothing per sample); an
    # Adam step on 16 × 4,096 samples takes about 1.2 s on 2 cores (0.83 steps/s).
    "cpu": SaShiMiConfig(d_model=16, n_layers=2, d_state=32, film=True),
    # For tests: compiles and runs in a second or two.
    "tiny": SaShiMiConfig(d_model=4, n_layers=2, d_state=4, embed_dims=(16, 32, 32)),
}

# Angular frequencies (rad per unit of c_noise) of the noise embedding's Fourier features.
_FOURIER_MIN, _FOURIER_MAX = 0.1, 100.0

# The reference initialises its 1×1 convolutions with Kaiming normal.
_conv_init = nn.initializers.he_normal()


def fourier_features(c_noise: jax.Array, dim: int) -> jax.Array:
    """Returns `[cos(ω_k·c), sin(ω_k·c)]` for dim/2 log-spaced ω_k: [B] → [B, dim]."""
    omega = jnp.geomspace(_FOURIER_MIN, _FOURIER_MAX, dim // 2, dtype=jnp.float32)
    phase = c_noise[:, None] * omega[None, :]  # [B, dim/2]
    return jnp.concatenate([jnp.cos(phase), jnp.sin(phase)], axis=-1)


class FiLM(nn.Module):
    """Scales and shifts a LayerNorm's output [B, L, H] per channel from the embedding [B, E]."""

    @nn.compact
    def __call__(self, y: jax.Array, embedding: jax.Array) -> jax.Array:
        H = y.shape[-1]
        scale, shift = jnp.split(
            nn.Dense(2 * H, kernel_init=nn.initializers.zeros, name="film")(embedding), 2, axis=-1
        )  # [B, H] each
        return y * (1.0 + scale[:, None, :]) + shift[:, None, :]


class ResidualBlock(nn.Module):
    """SaShiMi's DiffWave block: noise-conditioned bidirectional S4D, then a feed-forward."""

    config: SaShiMiConfig

    @nn.compact
    def __call__(self, x: jax.Array, embedding: jax.Array) -> jax.Array:
        """Maps x [B, L, H] and the noise embedding [B, E] to [B, L, H]."""
        H = x.shape[-1]
        cfg = self.config
        y = nn.LayerNorm(name="norm_s4")(x)
        if cfg.film:
            y = FiLM(name="film_s4")(y, embedding)
        else:
            y = y + nn.Dense(H, name="embed")(embedding)[:, None, :]
        y = S4D(cfg.d_state, bidirectional=True, dt_min=cfg.dt_min, dt_max=cfg.dt_max)(y)
        y = nn.gelu(y, approximate=False)  # [B, L, 2H]
        x = x + nn.Dense(H, name="s4_out")(y)

        y = nn.LayerNorm(name="norm_ff")(x)
        if cfg.film:
            y = FiLM(name="film_ff")(y, embedding)
        y = nn.Dense(cfg.ff * H, kernel_init=_conv_init, name="ff_in")(y)
        y = nn.gelu(y, approximate=False)
        return x + nn.Dense(H, kernel_init=_conv_init, name="ff_out")(y)


class DownPool(nn.Module):
    """Pools length by p and widens channels: [B, L, H] → [B, L/p, H_out]."""

    pool: int
    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        B, L, H = x.shape
        x = x.reshape(B, L // self.pool, self.pool * H)  # p consecutive samples side by side
        return nn.Dense(self.features, kernel_init=_conv_init)(x)


class UpPool(nn.Module):
    """Mirrors DownPool: [B, L, H_in] → [B, L·p, H_out], with no causal shift."""

    pool: int
    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        B, L, _ = x.shape
        x = nn.Dense(self.pool * self.features, kernel_init=_conv_init)(x)
        return x.reshape(B, L * self.pool, self.features)


class _DownStep(nn.Module):
    """Runs one block of a down (or the centre) stage; returns its input too, as the skip."""

    config: SaShiMiConfig

    @nn.compact
    def __call__(self, h: jax.Array, embedding: jax.Array) -> tuple[jax.Array, jax.Array]:
        block = nn.remat(ResidualBlock) if self.config.remat else ResidualBlock
        return block(self.config, name="block")(h, embedding), h


class _UpStep(nn.Module):
    """Runs one block of an up stage and adds the matching skip from the way down."""

    config: SaShiMiConfig

    @nn.compact
    def __call__(
        self, h: jax.Array, skip: jax.Array, embedding: jax.Array
    ) -> tuple[jax.Array, None]:
        block = nn.remat(ResidualBlock) if self.config.remat else ResidualBlock
        return block(self.config, name="block")(h, embedding) + skip, None


def _stage(step: type[nn.Module], n_layers: int, in_axes: Any) -> type[nn.Module]:
    """Returns a module that runs `n_layers` blocks of one stage as a `nn.scan`.

    XLA compiles one block per stage, and with `remat` the backward pass recomputes one block
    at a time (on unrolled blocks, XLA's CPU scheduling kept the memory as high as without
    remat). The blocks' parameters are stacked on a leading axis of length `n_layers`.
    """
    return nn.scan(
        step,
        variable_axes={"params": 0, CACHE: 0},
        split_rngs={"params": True},
        in_axes=in_axes,
        length=n_layers,
    )


class SaShiMi(nn.Module):
    """SaShiMi-Diff as a raw EDM network: `F_θ(x [B, T], c_noise [B]) → [B, T]`."""

    config: SaShiMiConfig = SaShiMiConfig()

    @nn.compact
    def __call__(self, x: jax.Array, c_noise: jax.Array) -> jax.Array:
        """Returns F_θ(x, c_noise) for x of shape [B, T] (T a multiple of the total pooling)."""
        cfg = self.config
        if x.ndim != 2:
            raise ValueError(f"x must have shape [B, T], got {x.shape}")
        B, T = x.shape
        if c_noise.shape != (B,):
            raise ValueError(f"c_noise must have shape [B] = ({B},), got {c_noise.shape}")
        if T % cfg.total_pool:
            raise ValueError(
                f"length T = {T} must be a multiple of {cfg.total_pool} (the product of the "
                f"pooling factors {cfg.pool}); e.g. pad or crop to "
                f"{T // cfg.total_pool * cfg.total_pool or cfg.total_pool}"
            )
        down_stage = _stage(_DownStep, cfg.n_layers, nn.broadcast)
        up_stage = _stage(_UpStep, cfg.n_layers, (0, nn.broadcast))

        # Noise embedding, shared by all blocks.
        e_in, e_mid, e_out = cfg.embed_dims
        embedding = fourier_features(c_noise.astype(jnp.float32), e_in)
        embedding = nn.silu(nn.Dense(e_mid, name="embed_mid")(embedding))
        embedding = nn.silu(nn.Dense(e_out, name="embed_out")(embedding))

        h = nn.relu(nn.Dense(cfg.d_model, kernel_init=_conv_init, name="input")(x[..., None]))

        # Down: keep every block's and every pool's input for the skip connections.
        skips = []
        H = cfg.d_model
        for level, p in enumerate(cfg.pool):
            h, block_inputs = down_stage(cfg, name=f"down{level}")(h, embedding)
            skips.append(block_inputs)  # [n_layers, B, L, H]
            skips.append(h)
            H *= cfg.expand
            h = DownPool(p, H, name=f"down{level}_pool")(h)

        # Centre (its per-block skips are not used).
        centre_input = h
        h, _ = down_stage(cfg, name="centre")(h, embedding)
        h = h + centre_input

        # Up: each layer's output gets the matching skip back, in reverse order.
        for level in reversed(range(len(cfg.pool))):
            H //= cfg.expand
            h = UpPool(cfg.pool[level], H, name=f"up{level}_pool")(h)
            h = h + skips.pop()
            h, _ = up_stage(cfg, name=f"up{level}")(h, skips.pop()[::-1], embedding)

        h = nn.LayerNorm(name="output_norm")(h)
        if cfg.film:
            h = FiLM(name="output_film")(h, embedding)
        h = nn.relu(nn.Dense(cfg.d_model, kernel_init=_conv_init, name="output_hidden")(h))
        out = nn.Dense(
            1, kernel_init=nn.initializers.zeros, bias_init=nn.initializers.zeros, name="output"
        )(h)
        return out[..., 0]
