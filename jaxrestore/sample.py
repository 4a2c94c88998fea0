"""Posterior sampling: CQT-Diff's stochastic EDM sampler with the poster's guidance methods.

`restore(denoiser, y, operator, key, config)` restores ONE clip and is a pure, traceable
function: `jax.jit` compiles it whole (`lax.scan` over the steps, `lax.fori_loop` over the
RePaint cycles) and `jax.vmap` over `y`, `key` and the operator's leaves gives batches and
several posterior samples. `Restorer` runs the very same passes from a host loop over one
jitted, vmapped pass, which is faster on XLA's CPU backend (see `experiments/benchmark.py`)
and can report progress; `ShardedRestorer` runs that host loop on a batch split over every
device of a `'data'` mesh (the evaluation and whole-recording restoration both use it).

One step from σ_i to σ_{i+1} (DESIGN §3, Karras et al. 2022 Algorithm 2):
  1. churn:   σ̂ = σ_i(1+γ_i),  x̂ = x + √(σ̂² − σ_i²)·S_noise·ε
  2. estimate x̂0 = D(x̂; σ̂) of the denoiser the config's guidance transforms made
     (RG / ΠGDM, then DC: guidance.py)
  3. Euler:   d = (x̂ − x̂0)/σ̂,  x' = x̂ + (σ_{i+1} − σ̂)·d
  4. Heun:    a second guided estimate at σ_{i+1}, average slope (all but the last step)
  5. RePaint: for the U(t) cycles this step owes, re-noise x' to σ_i and repeat the step.

Random keys are `fold_in(fold_in(key, i), cycle)`, so a clip's result depends only on its
own key, never on its batch or device.
"""

import dataclasses
import functools
import types
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from jaxrestore import edm, guidance, priors, sharding, spade

# fold_in datum of the initial noise; steps use their index, so this must not be one.
_INIT_SALT = 0x7FFFFFFF


class Initializer(Protocol):
    """Where a warm start begins (DESIGN §4.6): `x_init` for one clip, before any noise."""

    def __call__(self, y: jax.Array, operator: guidance.Operator) -> jax.Array: ...


@dataclasses.dataclass(frozen=True)
class ColdStart:
    """The cold start: `x_init = 0`, so the sampler starts from pure noise at σ_max."""

    def __call__(self, y: jax.Array, operator: guidance.Operator) -> jax.Array:
        return jnp.zeros_like(y)


@dataclasses.dataclass(frozen=True)
class FromObservation:
    """A warm start from the observation: `x_init = A†y`, for any task."""

    def __call__(self, y: jax.Array, operator: guidance.Operator) -> jax.Array:
        return operator.pinv(y)


Transforms = tuple[guidance.Transform, ...]


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
    """Every knob of the sampler. Defaults are CQT-Diff's (DESIGN §3, §4.1).

    Attributes:
      steps: T, the number of noise levels before the final 0.
      sigma_min, sigma_max, rho: the schedule `σ_i` of DESIGN §3.
      s_churn, s_tmin, s_tmax, s_noise: stochastic churn; γ = min(S_churn/T, √2−1) on
        levels with S_tmin ≤ σ_i ≤ S_tmax.
      heun: Heun's second-order correction on every step but the last.
      sigma_data: σ_d of a bare denoiser, for ΠGDM's `r²`; a `priors.Prior` brings its own,
        which takes precedence.
      repaint_cycles: u, the extra re-noise-and-redo cycles per step inside the window.
      repaint_window: (φ1, φ2): the cycles run on steps with φ1·T/3 ≤ t ≤ φ2·T/3, t = T − i.
      init: where a warm start begins (DESIGN §4.6): `ColdStart()`, `FromObservation()` (A†y),
        `spade.ASpadeStart()` or any `Initializer`.
      sigma_start: start at the first level σ_k ≤ sigma_start from `x_init + σ_k·ε` and run
        only the remaining steps; None starts at σ_max.
      guidance: the transforms that turn the denoiser into the guided one, applied in order
        (`guidance.guide`): e.g. `(ReconstructionGuidance(), DataConsistency())` for RG + DC;
        `()` samples the prior unguided. The default is CQT-Diff's RG, ξ = 0.2.
    """

    steps: int = 35
    sigma_min: float = 1e-4
    sigma_max: float = 1.0
    rho: float = 13.0
    s_churn: float = 5.0
    s_tmin: float = 0.0
    s_tmax: float = 50.0
    s_noise: float = 1.0
    heun: bool = True
    sigma_data: float = 0.057
    repaint_cycles: int = 0
    repaint_window: tuple[float, float] = (1.0, 2.0)
    init: Initializer = ColdStart()
    sigma_start: float | None = None
    # The annotation is evaluated after the default is bound to the name `guidance` in the
    # class body, where it hides the module: hence the alias.
    guidance: Transforms = (guidance.ReconstructionGuidance(),)

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        if not 0 < self.sigma_min <= self.sigma_max:
            raise ValueError(
                f"need 0 < sigma_min <= sigma_max, got {self.sigma_min}, {self.sigma_max}"
            )
        if isinstance(self.guidance, str) or not all(callable(t) for t in self.guidance):
            raise ValueError(
                "guidance must be a sequence of transforms (e.g. guidance.ReconstructionGuidance(),"
                f" guidance.DataConsistency()), got {self.guidance!r}"
            )
        if isinstance(self.init, str) or not callable(self.init):
            raise ValueError(
                "init must be an Initializer (ColdStart(), FromObservation(), "
                f"spade.ASpadeStart()), got {self.init!r}"
            )
        if self.repaint_cycles < 0:
            raise ValueError(f"repaint_cycles must be >= 0, got {self.repaint_cycles}")
        if len(self.repaint_window) != 2 or self.repaint_window[0] > self.repaint_window[1]:
            raise ValueError(
                f"repaint_window must be (φ1, φ2) with φ1 <= φ2, got {self.repaint_window}"
            )
        if self.sigma_data <= 0:
            raise ValueError(f"sigma_data must be positive, got {self.sigma_data}")
        if self.sigma_start is not None and self.sigma_start <= 0:
            raise ValueError(f"sigma_start must be positive or None, got {self.sigma_start}")
        # A list would make the config unhashable, and it is a static argument of jit.
        object.__setattr__(self, "repaint_window", tuple(float(v) for v in self.repaint_window))
        object.__setattr__(self, "guidance", tuple(self.guidance))


# The poster's table rows (Tables 1 and 2). The poster publishes neither its δρ schedule nor
# its RePaint u: ξ rising linearly 1 → 2 won `benchmark --sections=sweep` on the shipped prior
# (declipping +8.5 dB on 3 validation clips; 0.2 → 0.5: +3.5, 2 → 4: +5.6; README), u = 2
# won the first prior's sweep. "pigdm+sdc" (issue #16) replaces DC by a few A-SPADE iterations
# started from the estimate (`spade.SparseConsistency`; plain DC on operators other than Clip).
# "aspade_warm" (issue #16) runs RG + DC only below σ_start, from A-SPADE's declipping; its
# σ_start won `benchmark --sections=warmstart` on validation clips (README, "Declipping").
# "aspade_dc" walks down from the same place with DC alone (a forward pass per evaluation, no
# VJP) on the levels of a 6-step schedule: averaged over 8 draws it came within 0.06 dB of RG +
# DC at 35 steps averaged over 4, on validation clips, in a fifth of the time (README,
# "Declipping").
ASPADE_WARM_SIGMA = 0.01
_RG = guidance.ReconstructionGuidance(xi=guidance.ConstantXi(0.2))
_RG_DRHO = guidance.ReconstructionGuidance(xi=guidance.LinearXi(1.0, 2.0))
_PIGDM = guidance.PseudoinverseGuidance(scale=1.0)
_DC = guidance.DataConsistency()
PRESETS: Mapping[str, SamplerConfig] = types.MappingProxyType(
    {
        "rg": SamplerConfig(guidance=(_RG,)),
        "rg+dc": SamplerConfig(guidance=(_RG, _DC)),
        "rg_drho+dc": SamplerConfig(guidance=(_RG_DRHO, _DC)),
        "pigdm+dc": SamplerConfig(guidance=(_PIGDM, _DC)),
        "rg_drho+dc+rp": SamplerConfig(
            guidance=(_RG_DRHO, _DC), repaint_cycles=2, repaint_window=(1.0, 2.0)
        ),
        "pigdm+sdc": SamplerConfig(guidance=(_PIGDM, spade.SparseConsistency())),
        "aspade_warm": SamplerConfig(
            guidance=(_RG, _DC), init=spade.ASpadeStart(), sigma_start=ASPADE_WARM_SIGMA
        ),
        "aspade_dc": SamplerConfig(
            steps=6, guidance=(_DC,), init=spade.ASpadeStart(), sigma_start=ASPADE_WARM_SIGMA
        ),
    }
)


@dataclasses.dataclass(frozen=True)
class Schedule:
    """The static, per-step quantities of a config (host NumPy, float32).

    Attributes:
      sigmas: σ_0 … σ_{T−1}, 0: [T + 1].
      gammas: churn factor γ_i: [T].
      cycles: extra RePaint cycles U(T − i) of step i: [T], int32.
      start: the first step run (0 unless warm-started).
    """

    sigmas: np.ndarray
    gammas: np.ndarray
    cycles: np.ndarray
    start: int

    def passes(self) -> list[tuple[int, int]]:
        """Returns every (step, cycle) pass in order; cycle 0 is the step's first pass."""
        return [
            (i, c) for i in range(self.start, len(self.gammas)) for c in range(1 + self.cycles[i])
        ]


def schedule(config: SamplerConfig) -> Schedule:
    """Computes the noise levels, churn, RePaint cycles and start step of `config`."""
    T = config.steps
    sigmas = edm.sigma_schedule(T, config.sigma_min, config.sigma_max, config.rho)  # NumPy
    in_churn = (sigmas[:T] >= config.s_tmin) & (sigmas[:T] <= config.s_tmax)
    gamma = min(config.s_churn / T, np.sqrt(2.0) - 1.0)
    gammas = np.where(in_churn, gamma, 0.0).astype(np.float32)
    t = T - np.arange(T)  # DESIGN §4.5 counts t down from T.
    phi1, phi2 = config.repaint_window
    in_window = (phi1 * T / 3 <= t) & (t <= phi2 * T / 3)
    cycles = np.where(in_window, config.repaint_cycles, 0).astype(np.int32)
    start = 0
    if config.sigma_start is not None:
        start = int(np.argmax(sigmas[:T] <= config.sigma_start * (1 + 1e-6)))
        if sigmas[start] > config.sigma_start * (1 + 1e-6):
            start = T - 1  # below every level: only the last step is left.
    return Schedule(sigmas=sigmas, gammas=gammas, cycles=cycles, start=start)


def nfe(config: SamplerConfig) -> int:
    """Returns the number of denoiser evaluations of one restore (each with a VJP if guided).

    Every pass costs one evaluation, plus one for Heun's correction on all passes but those
    of the last step (σ_T = 0). Step i runs 1 + U(T − i) passes; a warm start skips the steps
    above `sigma_start`. CQT-Diff's default (T = 35, Heun, no RePaint) is 69.
    """
    sched = schedule(config)
    T = config.steps
    return sum(1 + (config.heun and i < T - 1) for i, _ in sched.passes())


def sigma_data(denoiser: edm.Denoiser | priors.Prior, config: SamplerConfig) -> float:
    """Returns the σ_d the sampler works with: a `Prior`'s own, else the config's."""
    return denoiser.sigma_data if isinstance(denoiser, priors.Prior) else config.sigma_data


def _estimate(denoiser, config, y, operator, x_hat, sigma_hat, i):
    """Returns x̂0 at (x̂, σ̂) of step i: the denoiser after the config's guidance transforms."""
    context = guidance.Context(
        y=y,
        operator=operator,
        sigma_data=sigma_data(denoiser, config),
        step=i,
        steps=config.steps,
        sigma_max=config.sigma_max,
    )
    return guidance.guide(config.guidance, denoiser, context)(x_hat, sigma_hat)


def sampler_pass(
    denoiser: edm.Denoiser,
    config: SamplerConfig,
    y: jax.Array,
    operator: guidance.Operator,
    key: jax.Array,
    x: jax.Array,
    i: jax.Array,
    cycle: jax.Array,
) -> jax.Array:
    """Runs pass `cycle` of step `i` on one clip: returns x at σ_{i+1}.

    Cycle 0 starts from x at σ_i; a RePaint cycle (> 0) starts from the previous pass's
    output at σ_{i+1} and first re-noises it to σ_i with variance σ_i² − σ_{i+1}², which
    leaves each level's marginal unchanged.
    """
    sched = schedule(config)
    sigmas, gammas = jnp.asarray(sched.sigmas), jnp.asarray(sched.gammas)
    sigma_cur, sigma_next, gamma = sigmas[i], sigmas[i + 1], gammas[i]
    key_renoise, key_churn = jax.random.split(jax.random.fold_in(jax.random.fold_in(key, i), cycle))

    # 5. RePaint: back from σ_{i+1} to σ_i (a no-op on the first pass).
    renoise = jnp.where(cycle > 0, jnp.sqrt(jnp.maximum(sigma_cur**2 - sigma_next**2, 0.0)), 0.0)
    x = x + renoise * jax.random.normal(key_renoise, x.shape, x.dtype)

    # 1. Churn: raise the noise level to σ̂ = σ_i(1 + γ_i).
    sigma_hat = sigma_cur * (1.0 + gamma)
    churn = jnp.sqrt(jnp.maximum(sigma_hat**2 - sigma_cur**2, 0.0)) * config.s_noise
    x_hat = x + churn * jax.random.normal(key_churn, x.shape, x.dtype)

    # 2-3. Guided estimate, then an Euler step to σ_{i+1}.
    x0 = _estimate(denoiser, config, y, operator, x_hat, sigma_hat, i)
    d_cur = (x_hat - x0) / sigma_hat
    # At σ_{i+1} = 0 the Euler step lands on x̂0 itself; take it exactly, so that DC's
    # consistency survives float rounding.
    x_next = jnp.where(sigma_next > 0, x_hat + (sigma_next - sigma_hat) * d_cur, x0)

    # 4. Heun's correction, except on the last step where σ_{i+1} = 0.
    if config.heun:

        def heun(x_next):
            x0_next = _estimate(denoiser, config, y, operator, x_next, sigma_next, i)
            d_next = (x_next - x0_next) / sigma_next
            return x_hat + (sigma_next - sigma_hat) * 0.5 * (d_cur + d_next)

        x_next = jax.lax.cond(sigma_next > 0, heun, lambda x: x, x_next)
    return x_next


def initial_state(
    config: SamplerConfig, y: jax.Array, operator: guidance.Operator, key: jax.Array
) -> jax.Array:
    """Returns the sampler's starting point `x_init + σ_start·ε` for one clip (DESIGN §4.6)."""
    sched = schedule(config)
    x_init = config.init(y, operator)
    eps = jax.random.normal(jax.random.fold_in(key, _INIT_SALT), y.shape, y.dtype)
    return x_init + sched.sigmas[sched.start] * eps


def restore(
    denoiser: edm.Denoiser,
    y: jax.Array,
    operator: guidance.Operator,
    key: jax.Array,
    config: SamplerConfig,
) -> jax.Array:
    """Draws one restoration of ONE clip from the posterior p(x0 | y) (DESIGN §3-§4, §9).

    Traceable as one program: `jax.jit(functools.partial(restore, denoiser, config=config))`
    compiles the whole loop; `jax.vmap` over `y`, `key` and the operator's per-clip leaves
    gives batches and posterior samples.

    Args:
      denoiser: `D(x, sigma)`, [T] and a scalar to [T], or a `priors.Prior` (then its σ_d is
        used, not the config's). The observation must be at the prior's level
        (`Prior.normalize`).
      y: the degraded observation, [T].
      operator: the degradation (a `jaxrestore.degradations` pytree).
      key: a `jax.random` key for this clip (and sample).
      config: the sampler's configuration.

    Returns:
      The restored clip, [T].
    """
    sched = schedule(config)
    run_pass = functools.partial(sampler_pass, denoiser, config, y, operator, key)
    cycles = jnp.asarray(sched.cycles)

    def step(x, i):
        x = run_pass(x, i, jnp.int32(0))
        if config.repaint_cycles > 0:
            x = jax.lax.fori_loop(1, 1 + cycles[i], lambda c, x: run_pass(x, i, c), x)
        return x, None

    x = initial_state(config, y, operator, key)
    x, _ = jax.lax.scan(step, x, jnp.arange(sched.start, config.steps, dtype=jnp.int32))
    return x


def posterior_mean(
    denoiser: edm.Denoiser | priors.Prior,
    y: jax.Array,
    operator: guidance.Operator,
    key: jax.Array,
    config: SamplerConfig,
    num_draws: int,
) -> tuple[jax.Array, jax.Array]:
    """Returns the mean and the spread of `num_draws` posterior draws of ONE clip.

    The mean of draws from p(x0 | y) estimates the posterior mean E[x0 | y], the restoration
    of least squared error; their per-sample standard deviation says where the posterior is
    unsure. Draw d is `restore` with the key `fold_in(key, d)`, all draws one `vmap`, so the
    whole is traceable as one program.

    Args:
      denoiser, y, operator, key, config: as for `restore`.
      num_draws: N, the number of draws.

    Returns:
      `(mean, spread)`, each [T].
    """
    if num_draws < 1:
        raise ValueError(f"num_draws must be at least 1, got {num_draws}")
    keys = jax.vmap(functools.partial(jax.random.fold_in, key))(jnp.arange(num_draws))
    draws = jax.vmap(lambda k: restore(denoiser, y, operator, k, config))(keys)  # [N, T]
    return jnp.mean(draws, axis=0), jnp.std(draws, axis=0)


def _host_loop(
    config: SamplerConfig,
    x: jax.Array,
    one_pass: Callable[[jax.Array, jax.Array, jax.Array], jax.Array],
    progress: Callable[[int, int], None] | None,
) -> jax.Array:
    """Runs `one_pass(x, i, cycle)` over the schedule's passes, reporting NFE done after each."""
    done, T, total = 0, config.steps, nfe(config)
    for i, cycle in schedule(config).passes():
        x = one_pass(x, jnp.int32(i), jnp.int32(cycle))
        done += 1 + (config.heun and i < T - 1)
        if progress is not None:
            progress(done, total)
    return x


class Restorer:
    """Restores batches of clips with one compiled program, reused across calls.

    `stepwise=True` runs a host loop over one jitted, vmapped pass (`sampler_pass`), which
    gives the same result as `restore` and reports progress; `stepwise=False` runs `restore`
    vmapped and jitted whole. Choose by `experiments/benchmark.py` on your hardware.

    Args:
      denoiser: `D(x, sigma)` on one clip, or a `priors.Prior`.
      config: the sampler's configuration.
      operator_in_axes: how the operator's leaves are batched (`jax.vmap` in_axes): 0 when
        every leaf has a leading batch axis (per-clip thresholds, say), None when shared.
      stepwise: host loop over passes (True) or one whole program (False).
    """

    def __init__(
        self,
        denoiser: edm.Denoiser,
        config: SamplerConfig,
        *,
        operator_in_axes: Any = 0,
        stepwise: bool = True,
    ):
        self.config = config
        self.schedule = schedule(config)
        self.nfe = nfe(config)
        self.stepwise = stepwise
        axes = (0, operator_in_axes, 0)
        self._init = jax.jit(
            jax.vmap(functools.partial(initial_state, config), in_axes=(0, operator_in_axes, 0))
        )
        self._pass = jax.jit(
            jax.vmap(
                functools.partial(sampler_pass, denoiser, config),
                in_axes=(*axes, 0, None, None),
            )
        )
        self._whole = jax.jit(
            jax.vmap(
                lambda y, op, key: restore(denoiser, y, op, key, config),
                in_axes=axes,
            )
        )

    def __call__(
        self,
        y: jax.Array,
        operator: guidance.Operator,
        keys: jax.Array,
        progress: Callable[[int, int], None] | None = None,
    ) -> jax.Array:
        """Restores a batch: `y` [B, T], `keys` [B] → [B, T].

        Args:
          y: observations, [B, T].
          operator: the degradation, batched as `operator_in_axes` says.
          keys: one key per clip, [B].
          progress: called as `progress(done, total)` in denoiser evaluations after each
            pass (stepwise only).
        """
        if not self.stepwise:
            return self._whole(y, operator, keys)
        x = self._init(y, operator, keys)
        return _host_loop(
            self.config, x, lambda x, i, c: self._pass(y, operator, keys, x, i, c), progress
        )


class ShardedRestorer:
    """Restores a batch split over a `'data'` mesh, each device its own clips, with progress.

    The host loop of `Restorer` over the public `initial_state` and `sampler_pass`, with each
    pass run per device (`sharding.per_device`): under plain `jax.jit` the partitioner would
    gather the whole batch onto every device before each FFT of the denoiser and the operator.
    Each clip's result is that of `restore`, whatever the batch or the device count.

    The operator is built per clip, inside the traced pass, from per-clip parameters (a
    threshold, a mask; anything with a leading batch axis): an operator cannot be built outside
    from a global array that spans other processes.

    Args:
      denoiser: `D(x, sigma)` on one clip.
      config: the sampler's configuration.
      mesh: the `'data'` mesh; by default every device of this process.
      make_operator: one clip's parameters → its operator, e.g. `degradations.Clip`.
    """

    def __init__(
        self,
        denoiser: edm.Denoiser,
        config: SamplerConfig,
        mesh: jax.sharding.Mesh | None = None,
        make_operator: Callable[[Any], Any] = lambda operator: operator,
    ):
        self.config = config
        self.schedule = schedule(config)
        self.nfe = nfe(config)
        self.mesh = sharding.local_mesh() if mesh is None else mesh
        rows, replicated = jax.sharding.PartitionSpec(sharding.AXIS), jax.sharding.PartitionSpec()

        def init(y, params, key):
            return initial_state(config, y, make_operator(params), key)

        def one_pass(y, params, key, x, i, cycle):
            return sampler_pass(denoiser, config, y, make_operator(params), key, x, i, cycle)

        def batched(fn, in_axes):
            def run(y, params, key_data, *rest):
                keys = jax.random.wrap_key_data(key_data)
                return jax.vmap(fn, in_axes=in_axes)(y, params, keys, *rest)

            return run

        self._init = sharding.per_device(batched(init, 0), self.mesh, rows, rows)
        self._pass = sharding.per_device(
            batched(one_pass, (0, 0, 0, 0, None, None)),
            self.mesh,
            (rows, rows, rows, rows, replicated, replicated),
            rows,
        )

    def __call__(
        self,
        y: jax.Array,
        params: Any,
        key_data: jax.Array,
        progress: Callable[[int, int], None] | None = None,
    ) -> jax.Array:
        """Restores `y` [B, T] with per-clip operator parameters and raw keys [B, 2] → [B, T].

        B must be a multiple of the mesh size. `progress(done, total)` is called in denoiser
        evaluations after each pass.
        """
        if y.shape[0] % self.mesh.size:
            raise ValueError(
                f"a batch of {y.shape[0]} clips does not divide over {self.mesh.size} devices"
            )
        x = self._init(y, params, key_data)
        return _host_loop(
            self.config, x, lambda x, i, c: self._pass(y, params, key_data, x, i, c), progress
        )
