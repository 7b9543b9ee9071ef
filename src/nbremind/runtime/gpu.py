"""The GPUs this process uses, through NVIDIA's management library (placeholder)."""

from __future__ import annotations

from ..core.thresholds import GpuReading

__all__ = ["GpuSampler"]


class GpuSampler:
    """Reads this process's GPUs (placeholder: none)."""

    def reading(self, now: float) -> GpuReading | None:
        """The GPUs' memory and utilisation, or ``None`` where none answers."""
        return None

    def why_not(self) -> str | None:
        """Why there is no reading (``None``: there is one)."""
        return "no NVIDIA management library (pip install 'nbremind[gpu]')"
