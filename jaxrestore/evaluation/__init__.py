"""Batch evaluation of the restoration methods: the poster's Tables 1 and 2.

Every method (the degraded input itself, the sampler presets of `jaxrestore.sample.PRESETS`,
A-SPADE and S-SPADE for declipping) restores held-out clips of every set (dry, wet) for every
task (declipping to an input SDR of 5 or 10 dB, bandwidth extension from 3 or 5 kHz), and is
scored per clip by SI-SDR and LSD, per set by FAD (with VGGish weights) and by the weight-free
"FMD (log-mel)", never reported as FAD. `runner.evaluate` writes `table1.md`, `table2.md` and
`results.json` (per task, set and method: mean, 95 % interval and n of each clip metric, the
set distances, NFE and wall time per clip).

Modules, one part each:
- `tasks`: what to run (tasks, methods, sets) and the frozen `EvalConfig`;
- `clips`: the held-out clips, their keys and their degradations;
- `methods`: each table row as a batch function of sharded arrays;
- `records`: the per-clip records and embeddings on disk;
- `runner`: the resumable, sharded run (`evaluate`);
- `tables`: statistics, `results.json` and the Markdown tables;
- `throughput`: clips per second against batch size and device count.
"""
