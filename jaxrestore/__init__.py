"""jaxrestore: restoring damaged vocals by diffusion posterior sampling, in JAX.

Modules (one concept each): `edm` (schedule, preconditioning, loss), `degradations`
(operators A with apply/pinv/project), `guidance` (RG, ΠGDM, DC as transforms of a denoiser),
`sample` (the posterior sampler), `priors` (the `Prior` object, closed-form baselines),
`metrics`, `audio` (I/O), `cqt`, `networks` (SaShiMi-Diff, CQT-Diff), `data`, `train`,
`checkpoints`, `pretrained`, `restoration` (whole recordings), `evaluation` (a package: Tables
1 and 2) and `sharding`, `spade`, `vggish`, `weight_formats`, `fad`, `plots`.
Submodules are imported on use so that `import jaxrestore.sample` does not pull in Flax.
"""

__version__ = "0.1.0"
