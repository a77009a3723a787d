"""Where LLM fine-tuning runs (``llm.device``): the first CUDA GPU when there is one, else the CPU.

A local run checks the machine before its first job (``check_local_devices``, called by the Snakefile's
``onstart``); a cluster's login node need not have a GPU, so there each job checks on its own node
(:func:`resolve_device`, called when the model is built).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from llmqfl.errors import ConfigError

if TYPE_CHECKING:  # torch loads only when a device is resolved: the Snakefile's check stays light
    import torch

    from llmqfl.settings import Settings

DEVICES = ("auto", "cpu", "cuda")
# peft imports bitsandbytes whenever it is installed; on a CPU with AVX512-BF16 bitsandbytes then tries to
# fetch a CPU 4-bit kernel from the Hugging Face hub and logs a warning when it cannot. QLoRA runs on CUDA
# only here, so that kernel is never used: the warning would only mislead a CPU job's log.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)


def resolve_device(setting: str = "auto") -> torch.device:
    """``llm.device`` as a torch device: ``auto`` is the current CUDA GPU when one is visible, else the CPU.

    ``cuda`` on a machine without a visible CUDA GPU is a :class:`ConfigError` (one line), raised before a
    model is loaded: asking for a GPU and silently training for hours on the CPU is worse than stopping.
    """
    import torch

    if setting not in DEVICES:
        raise ConfigError(f"config error: llm.device: {setting!r} is not one of: {', '.join(DEVICES)}")
    if setting == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    if setting == "cuda":
        raise ConfigError("config error: llm.device: cuda, but this machine has no CUDA GPU that torch can use "
                          "(torch.cuda.is_available() is False); use auto or cpu, or run on a GPU node")
    return torch.device("cpu")


def check_qlora_device(device: torch.device) -> None:
    """QLoRA's 4-bit layers (bitsandbytes) run on a CUDA GPU only."""
    if device.type != "cuda":
        raise ConfigError("config error: llm.peft: qlora needs a CUDA GPU (bitsandbytes 4-bit); use lora on CPU")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as exc:
        raise ConfigError("config error: llm.peft: qlora needs the bitsandbytes package "
                          "(pip install -r requirements.lock installs it on Linux x86_64 and aarch64)") from exc


def device_name(device: torch.device) -> str:
    """``cuda:0 (NVIDIA H100 80GB HBM3)`` or ``cpu``: for the job's log."""
    import torch

    return f"{device} ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "cpu"


def check_local_devices(settings: Settings, needs_llm: bool) -> None:
    """``llm.device: cuda`` or QLoRA without a CUDA GPU here stops a local run before its first job."""
    llm = settings.llm
    if not needs_llm or (llm.device != "cuda" and llm.peft != "qlora"):
        return
    device = resolve_device(llm.device)
    if llm.peft == "qlora":
        check_qlora_device(device)
