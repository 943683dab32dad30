"""Synthetic training traces with known stragglers.

* :mod:`~graphwia.synth.generate`: :func:`synthesize` a Megatron-style job and write it;
* :mod:`~graphwia.synth.kineto`: the same job as per-rank PyTorch profiler (Kineto) traces.
"""
