"""One simulator job whose pubs each draw from their own seed, so a pub's counts do not depend on its job.

Why: lockstep batching (:mod:`llmqfl.federated.lockstep`) puts several clients' evaluations in one
job. The Aer kinds' samplers draw every pub of a job from one generator seeded per job, so a pub's
counts would depend on the pubs before it. :class:`PerPubSeedSampler` runs pub ``i`` with the
kind's own sampler built for ``seeds[i]`` (plans and noisy engines are cached by the engine and
shared), inside ONE :class:`~qiskit.primitives.primitive_job.PrimitiveJob`: one job for the
accounting and the job ledger, the same counts as the pub alone in a job with that seed.

The runtime kinds (``fake``, ``ibm``) take one seed per job (``fake``: the simulator seed); there a
batched job draws differently from single-pub jobs, but deterministically for the same config.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from qiskit.primitives import PrimitiveResult
from qiskit.primitives.primitive_job import PrimitiveJob


class PerPubSeedSampler:
    """A SamplerV2-like object: ``run(pubs)`` -> one job, pub ``i`` sampled by ``build(seeds[i])``."""

    def __init__(self, build: Callable[[int], Any], seeds: Sequence[int]) -> None:
        if not seeds:
            raise ValueError("PerPubSeedSampler: no seeds")
        self._build = build
        self._seeds = [int(seed) for seed in seeds]

    def run(self, pubs: Iterable[Any], *, shots: int | None = None) -> PrimitiveJob:
        items = list(pubs)
        if len(items) != len(self._seeds):
            raise ValueError(f"PerPubSeedSampler: {len(items)} pubs for {len(self._seeds)} seeds")
        job = PrimitiveJob(self._run, items, shots)
        job._submit()
        return job

    def _run(self, pubs: list[Any], shots: int | None) -> PrimitiveResult:
        results = []
        for pub, seed in zip(pubs, self._seeds, strict=True):
            sampler = self._build(seed)
            results.append(sampler.run([pub], shots=shots).result()[0])
        return PrimitiveResult(results, metadata={"version": 2, "pub_seeds": list(self._seeds)})
