"""jaxrestore: restoring damaged vocals by diffusion posterior sampling, in JAX.

Modules (one concept each): `edm` (schedule, preconditioning, loss), `degradations`
(operators A with apply/pinv/project), `sample` (the posterior samplers), `metrics`,
`audio` (I/O), `cqt`, `networks` (SaShiMi-Diff, CQT-Diff), `data`, `train`, `spade`, `vggish`.
Submodules are imported on use so that `import jaxrestore.sample` does not pull in Flax.
"""

__version__ = "0.1.0"
