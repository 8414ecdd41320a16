"""Which devices exist, which one `auto` means, and how to train well on each."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


class DeviceError(ValueError):
    pass


@dataclass(frozen=True)
class DeviceInfo:
    name: str  # what --device takes: cpu, cuda:0, mps
    kind: str  # cpu, cuda, mps
    description: str
    memory_bytes: int  # 0 where unknown


def list_devices() -> list[DeviceInfo]:
    devices = [DeviceInfo("cpu", "cpu", f"CPU, {os.cpu_count()} cores", _host_memory())]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            devices.append(DeviceInfo(f"cuda:{i}", "cuda", props.name, props.total_memory))
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append(DeviceInfo("mps", "mps", "Apple GPU (Metal)", 0))
    return devices


def _host_memory() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


def resolve_device(name: str) -> torch.device:
    """'auto' picks the CUDA GPU with the most memory, then MPS, then the CPU."""
    devices = list_devices()
    if name == "auto":
        cuda = [d for d in devices if d.kind == "cuda"]
        if cuda:
            return torch.device(max(cuda, key=lambda d: d.memory_bytes).name)
        if any(d.kind == "mps" for d in devices):
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda":
        name = "cuda:0"
    if name not in {d.name for d in devices}:
        raise DeviceError(f"device {name!r} is not available here; available: "
                          f"{', '.join(['auto'] + [d.name for d in devices])}")
    return torch.device(name)


def describe(device: torch.device) -> str:
    for info in list_devices():
        if info.name == str(device) or (device.type == "cuda" and info.name == f"cuda:{device.index or 0}"):
            return f"{info.name} ({info.description})"
    return str(device)
