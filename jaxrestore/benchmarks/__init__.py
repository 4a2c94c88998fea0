"""Speed and quality figures of the networks and the samplers, as JSON-ready records.

`experiments/benchmark.py` is the app that prints them. Each section is a generator of
records (dicts), so that a long section shows its figures as they come:

- `costs`: wall-clock timing, the machine's matrix-product rate, FLOP and parameter counts.
- `networks`: forward, forward + VJP and a guided restore per network; older checkouts timed
  side by side.
- `samplers`: sampler overhead, RG δρ / RePaint sweeps and the quality-vs-NFE curve of
  declipping methods on held-out synthetic clips.

Nothing here is a test: targets are read off the figures, compared only within one run.
"""
