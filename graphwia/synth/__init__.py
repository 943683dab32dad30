"""Synthetic training traces with known stragglers.

* :mod:`~graphwia.synth.generate`: :func:`synthesize` a Megatron-style job and write it.
"""
