"""JSON forms of what the job ledger stores: a job's content digest and its primitive result.

The digest makes a ledger entry content-addressed: two jobs share it only when they carry the same
ISA circuits (every instruction, its parameters and its qubits), the same parameter values, the
same shots (or precision and observables) and the same draw seed. A result is stored losslessly:
each data field of each pub result (a ``BitArray`` of measured shots, or a numpy array such as an
estimator's ``evs``) as zlib-compressed bytes with its dtype and shape, so a replayed result is the
identical ``PrimitiveResult`` the job returned. Metadata is kept as plain JSON (objects that JSON
cannot hold become their text); nothing in the pipeline reads it back.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import zlib
from collections.abc import Sequence
from dataclasses import asdict, is_dataclass
from numbers import Real
from typing import Any

import numpy as np

from llmqfl.errors import LlmqflError

__all__ = ["LedgerCodecError", "circuit_digest", "decode_result", "encode_result", "job_digest"]


class LedgerCodecError(LlmqflError):
    """A result or a stored entry that the ledger cannot write or read back."""


# ---------------------------------------------------------------------------- content digests


def circuit_digest(circuit: Any) -> str:
    """SHA-256 of a circuit's width, global phase and instructions (name, parameters, qubit and clbit indices).

    Not QPY: QPY stores each ``Parameter``'s random uuid, so equal circuits would digest differently
    from one process to the next.
    """
    digest = hashlib.sha256()
    digest.update(f"{circuit.num_qubits}|{circuit.num_clbits}|{_param_text(circuit.global_phase)}".encode())
    index = {bit: i for i, bit in enumerate(circuit.qubits)}
    cindex = {bit: i for i, bit in enumerate(circuit.clbits)}
    for inst in circuit.data:
        operation = inst.operation
        item = [
            operation.name,
            [_param_text(p) for p in operation.params],
            [index[q] for q in inst.qubits],
            [cindex[c] for c in inst.clbits],
        ]
        digest.update(json.dumps(item, separators=(",", ":")).encode())
    return digest.hexdigest()


def _param_text(value: Any) -> str:
    if isinstance(value, Real):
        return repr(float(value))
    if isinstance(value, np.ndarray):  # unitary-like operands
        return hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()
    return str(value)  # a Parameter or ParameterExpression: its name/expression


def job_digest(what: str, pubs: Sequence[Any], *, seed: int, shots: int, circuit_digests: Sequence[str]) -> str:
    """SHA-256 of one job: the primitive, the draw seed, the total shots and every pub's content.

    ``circuit_digests`` are the pubs' :func:`circuit_digest` values (the ledger caches them per circuit).
    """
    digest = hashlib.sha256()
    digest.update(json.dumps({"what": what, "seed": int(seed), "shots": int(shots), "pubs": len(pubs)}).encode())
    for pub, circuit_hash in zip(pubs, circuit_digests, strict=True):
        circuit = pub.circuit
        values = np.ascontiguousarray(pub.parameter_values.as_array(circuit.parameters), dtype=np.float64)
        extra = {
            "circuit": circuit_hash,
            "shape": list(values.shape),
            "shots": getattr(pub, "shots", None),
            "precision": getattr(pub, "precision", None),
        }
        observables = getattr(pub, "observables", None)
        if observables is not None:
            extra["observables"] = observables.tolist()
        digest.update(json.dumps(extra, sort_keys=True, default=str).encode())
        digest.update(values.tobytes())
    return digest.hexdigest()


# ---------------------------------------------------------------------------- results


def encode_result(result: Any) -> dict[str, Any]:
    """A ``PrimitiveResult`` (sampler or estimator) as JSON-able data; :func:`decode_result` undoes it."""
    from qiskit.primitives.containers import SamplerPubResult

    pubs = []
    for position, pub_result in enumerate(result):
        data = pub_result.data
        fields = {name: _encode_field(value, f"pub {position} field {name!r}") for name, value in data.items()}
        pubs.append({
            "kind": "sampler" if isinstance(pub_result, SamplerPubResult) else "pub",
            "shape": list(data.shape),
            "fields": fields,
            "metadata": plain(pub_result.metadata),
        })  # fmt: skip
    return {"pubs": pubs, "metadata": plain(result.metadata)}


def decode_result(payload: dict[str, Any]) -> Any:
    """The ``PrimitiveResult`` that :func:`encode_result` stored."""
    from qiskit.primitives import PrimitiveResult
    from qiskit.primitives.containers import DataBin, PubResult, SamplerPubResult

    try:
        pub_results = []
        for pub in payload["pubs"]:
            fields = {name: _decode_field(value) for name, value in pub["fields"].items()}
            data = DataBin(**fields, shape=tuple(pub["shape"]))
            kind = SamplerPubResult if pub["kind"] == "sampler" else PubResult
            pub_results.append(kind(data, metadata=pub.get("metadata") or {}))
        return PrimitiveResult(pub_results, metadata=payload.get("metadata") or {})
    except (KeyError, TypeError, ValueError, zlib.error) as exc:
        raise LedgerCodecError(f"a stored job result cannot be read back ({type(exc).__name__}: {exc})") from exc


def _encode_field(value: Any, where: str) -> dict[str, Any]:
    from qiskit.primitives.containers import BitArray

    if isinstance(value, BitArray):
        return {"type": "BitArray", "num_bits": int(value.num_bits), **_encode_array(value.array, where)}
    return {"type": "ndarray", **_encode_array(np.asarray(value), where)}


def _decode_field(value: dict[str, Any]) -> Any:
    from qiskit.primitives.containers import BitArray

    array = _decode_array(value)
    if value["type"] == "BitArray":
        return BitArray(array, int(value["num_bits"]))
    if value["type"] == "ndarray":
        return array
    raise ValueError(f"unknown field type {value['type']!r}")


def _encode_array(array: np.ndarray, where: str) -> dict[str, Any]:
    array = np.ascontiguousarray(array)
    if array.dtype.hasobject:
        raise LedgerCodecError(f"job result: {where} holds Python objects; the ledger stores numeric arrays only")
    packed = base64.b64encode(zlib.compress(array.tobytes(), 6)).decode("ascii")
    return {"dtype": array.dtype.str, "shape": list(array.shape), "zlib": packed}


def _decode_array(value: dict[str, Any]) -> np.ndarray:
    raw = zlib.decompress(base64.b64decode(value["zlib"]))
    return np.frombuffer(raw, dtype=np.dtype(value["dtype"])).reshape(tuple(value["shape"])).copy()


def plain(value: Any) -> Any:
    """``value`` as plain JSON data: containers recursed, numpy scalars unwrapped, anything else as text."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, np.generic):
        return plain(value.item())
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray) and value.size <= 64:
        return plain(value.tolist())
    if is_dataclass(value) and not isinstance(value, type):
        return plain(asdict(value))
    return str(value)
