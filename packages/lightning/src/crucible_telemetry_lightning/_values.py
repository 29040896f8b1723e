"""Per-step numbers without a device sync: batch size, token count, gradient norm, lazy tensors.

A value that lives on an accelerator is not turned into a float in the training loop (that
``.item()`` would wait for the device every step). It is copied to the host without blocking and
the event that carries it is emitted once the copy is done: at a later step, or at the latest at
the end of the epoch. Values on the CPU are converted at once (no sync there).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import torch

__all__ = ["Deferred", "batch_size", "grad_norm", "host_grad_norm", "host_norm_ok", "token_count"]

_TOKEN_KEYS = ("input_ids", "tokens", "token_ids")


_Tensor = torch.Tensor


def _first_tensor(batch: Any, depth: int = 0) -> torch.Tensor | None:
    kind = type(batch)
    if kind is tuple or kind is list:  # the common (x, y) batch first: no ABC checks
        for v in batch:
            if isinstance(v, _Tensor):
                return v
    if isinstance(batch, _Tensor):
        return batch
    if depth > 2:
        return None
    if isinstance(batch, Mapping):
        values: Any = batch.values()
    elif isinstance(batch, (list, tuple)):
        values = batch
    else:
        return None
    for v in values:
        t = _first_tensor(v, depth + 1)
        if t is not None:
            return t
    return None


def batch_size(batch: Any) -> int | None:
    """Samples in a batch: the leading dimension of its first tensor (None when there is none)."""
    kind = type(batch)
    if kind is tuple or kind is list:  # the common (x, y) batch: one shape read
        for v in batch:
            if isinstance(v, _Tensor):
                shape = v.shape
                return int(shape[0]) if shape else None
    t = _first_tensor(batch)
    if t is None or t.dim() == 0:
        return None
    return int(t.shape[0])


def token_count(batch: Any) -> int | None:
    """Tokens in a batch whose mapping has ``input_ids`` (padding included: counting it needs no sync)."""
    kind = type(batch)
    if kind is tuple or kind is list:
        return None
    if isinstance(batch, Mapping):
        for k in _TOKEN_KEYS:
            t = batch.get(k)
            if isinstance(t, torch.Tensor):
                return int(t.numel())
    return None


_foreach_norm = getattr(torch, "_foreach_norm", None)
_vector_norm = torch.linalg.vector_norm
_stack = torch.stack
_HOST_DTYPES = (torch.float32, torch.float64)
#: Up to this many gradient elements in all, a CPU model's norm is summed through numpy: per step
#: that costs a third of the torch dispatches (a tiny step is dominated by per-call overheads).
HOST_NORM_MAX_ELEMENTS = 1 << 20

_vdot: Any = None
try:
    import numpy

    _vdot = numpy.vdot
except ImportError:  # pragma: no cover - numpy comes with torch in practice
    pass


def host_norm_ok(params: list[torch.Tensor]) -> bool:
    """Whether ``host_grad_norm(params)`` may be used: a small model of CPU float32/64."""
    if _vdot is None or not params:
        return False
    total = 0
    for p in params:
        if p.device.type != "cpu" or p.dtype not in _HOST_DTYPES:
            return False
        total += p.numel()
    return total <= HOST_NORM_MAX_ELEMENTS


def host_grad_norm(params: list[torch.Tensor]) -> float | None:
    """``grad_norm`` through numpy for ``host_norm_ok`` params; raises where numpy cannot view a gradient."""
    s = 0.0
    seen = False
    for p in params:
        g = p.grad
        if g is not None:
            a = g.numpy()
            s += float(_vdot(a, a))
            seen = True
    return math.sqrt(s) if seen else None


def grad_norm(params: list[torch.Tensor]) -> torch.Tensor | float | None:
    """The global L2 norm of the gradients of ``params``: a float on the CPU, else a tensor (not synced).

    One fused ``_foreach_norm`` (about 3x cheaper than ``clip_grad``'s ``get_total_norm`` on a
    small model) and one ``vector_norm`` of the stacked norms on the gradients' device (no sync),
    combined in Python for a few CPU tensors; gradients of mixed devices or dtypes take the
    per-tensor path. A small CPU model takes ``host_grad_norm`` instead (see ``host_norm_ok``).
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return None
    if _foreach_norm is not None:
        try:
            norms = _foreach_norm(grads)
            if len(norms) <= 64 and grads[0].device.type == "cpu":
                return math.sqrt(sum(float(n.item()) ** 2 for n in norms))
            total: torch.Tensor = _vector_norm(_stack(norms))
            return total
        except (RuntimeError, TypeError):
            pass
    fallback: torch.Tensor = _vector_norm(_stack([_vector_norm(g).float().to(grads[0].device) for g in grads]))
    return fallback


class Deferred:
    """Events whose measurements hold accelerator tensors, emitted once their host copies are ready."""

    __slots__ = ("_emit", "queue")

    def __init__(self, emit: Callable[[Any, dict[str, Any], dict[str, Any] | None], None]) -> None:
        self._emit = emit
        self.queue: deque[tuple[Any, dict[str, Any], dict[str, Any] | None, dict[str, torch.Tensor], Any]] = deque()

    def __len__(self) -> int:
        return len(self.queue)

    def push(
        self, name: Any, measurements: dict[str, Any], metadata: dict[str, Any] | None, tensors: dict[str, torch.Tensor]
    ) -> None:
        """Start non-blocking host copies of ``tensors``; the event waits until they land."""
        host = {k: t.detach().to("cpu", non_blocking=True) for k, t in tensors.items()}
        ready: Any = True  # nothing to wait for: it only keeps its place in the queue
        if any(t.is_cuda for t in tensors.values()):
            ready = torch.cuda.Event()  # type: ignore[no-untyped-call]
            ready.record()
        elif tensors:
            ready = None  # another accelerator: converted when forced (end of epoch)
        self.queue.append((name, measurements, metadata, host, ready))

    def drain(self, force: bool = False) -> None:
        """Emit queued events in order: those whose copies are done, or all of them when ``force``."""
        q = self.queue
        while q:
            name, m, md, host, ready = q[0]
            if ready is None:
                if not force:
                    return
            elif ready is not True:
                if not force and not ready.query():
                    return
                ready.synchronize()
            q.popleft()
            for k, t in host.items():
                m[k] = float(t)
            self._emit(name, m, md)
