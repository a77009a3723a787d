"""Sampler pubs in the shapes a caller may pass them, made ISA pubs of one backend.

A pub may be a circuit, a ``(circuit, parameter_values[, shots])`` tuple or a ``SamplerPub``;
each circuit must measure (a sampler returns counts) and is transpiled by the backend's cached pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qiskit import QuantumCircuit
    from qiskit.primitives.containers.sampler_pub import SamplerPub


def isa_sampler_pubs(pubs: Iterable[Any], transpile: Callable[[QuantumCircuit], QuantumCircuit],
                     shots: int) -> list[SamplerPub]:
    """``pubs`` as SamplerPubs of transpiled circuits; ``shots`` where a pub names none."""
    from qiskit.primitives.containers.sampler_pub import SamplerPub

    items = list(pubs)
    if not items:
        raise ValueError("sampler: no pubs given")
    out = []
    for pub in items:
        if isinstance(pub, SamplerPub):
            circuit, rest = pub.circuit, (pub.parameter_values, pub.shots)
        elif isinstance(pub, tuple):
            circuit, rest = pub[0], pub[1:]
        else:
            circuit, rest = pub, ()
        if not any(inst.operation.name == "measure" for inst in circuit.data):
            raise ValueError("sampler pub: the circuit has no measurements (add measure_all())")
        out.append(SamplerPub.coerce((transpile(circuit), *rest), shots))
    return out
