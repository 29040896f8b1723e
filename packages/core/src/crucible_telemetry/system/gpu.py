"""NVIDIA GPUs through NVML (``nvidia-ml-py``, optional): no library or no GPU means no rows.

Only the GPUs this process may use are read: ``$CUDA_VISIBLE_DEVICES`` (indices or UUIDs)
narrows the list when set. ``gpu_index`` is NVML's index, as ``nvidia-smi`` shows it.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["GpuReader"]


class GpuReader:
    """One NVML session; ``read()`` returns ``(gpu_index, measurements)`` per visible GPU."""

    def __init__(self) -> None:
        self._nvml: Any = None
        self.handles: list[tuple[int, Any]] = []
        try:
            import pynvml

            pynvml.nvmlInit()
        except Exception:  # no library, no driver, no GPU: nothing to read
            return
        self._nvml = pynvml
        try:
            count = pynvml.nvmlDeviceGetCount()
            handles = [(i, pynvml.nvmlDeviceGetHandleByIndex(i)) for i in range(count)]
        except Exception:
            handles = []
        self.handles = _visible(pynvml, handles, os.environ.get("CUDA_VISIBLE_DEVICES"))

    def read(self) -> list[tuple[int, dict[str, float]]]:
        """The measurements of each GPU; a figure the GPU does not report is left out."""
        nv = self._nvml
        out = []
        for index, h in self.handles:
            m: dict[str, float] = {"gpu_index": float(index)}
            _put(m, "gpu_utilization_percent", lambda h=h: nv.nvmlDeviceGetUtilizationRates(h).gpu)
            _put(m, "gpu_memory_utilization_percent", lambda h=h: nv.nvmlDeviceGetUtilizationRates(h).memory)
            _put(m, "gpu_memory_used_bytes", lambda h=h: nv.nvmlDeviceGetMemoryInfo(h).used)
            _put(m, "gpu_memory_total_bytes", lambda h=h: nv.nvmlDeviceGetMemoryInfo(h).total)
            _put(m, "gpu_temperature_c", lambda h=h: nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU))
            _put(m, "gpu_power_watts", lambda h=h: nv.nvmlDeviceGetPowerUsage(h) / 1000.0)
            out.append((index, m))
        return out

    def close(self) -> None:
        """End the NVML session (safe to call twice)."""
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception:
                pass
            self._nvml, self.handles = None, []


def _put(m: dict[str, float], key: str, fn: Any) -> None:
    try:
        m[key] = float(fn())
    except Exception:  # not supported on this GPU (power on some boards, for one)
        pass


def _visible(nv: Any, handles: list[tuple[int, Any]], spec: str | None) -> list[tuple[int, Any]]:
    """The handles ``$CUDA_VISIBLE_DEVICES`` admits (all when unset; none when empty)."""
    if spec is None:
        return handles
    wanted = [s.strip() for s in spec.split(",") if s.strip()]
    out = []
    for w in wanted:
        if w.lstrip("-").isdigit():
            if int(w) < 0:
                break  # CUDA stops at the first invalid index
            out += [(i, h) for i, h in handles if i == int(w)]
            continue
        for i, h in handles:
            try:
                uuid = nv.nvmlDeviceGetUUID(h)
            except Exception:
                continue
            uuid = uuid.decode() if isinstance(uuid, bytes) else uuid
            if uuid.startswith(w):
                out.append((i, h))
                break
    return out
