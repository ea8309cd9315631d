"""The torch device a run asks for: one check for every entry point (``reproduce``, ``check``,
``bench``), so that each refuses an unknown device, or CUDA on a machine without it, with the
same message naming its own argument (``device`` in Python, ``--device`` on the command line)."""
from __future__ import annotations

import torch

__all__ = ["DEVICES", "check_device"]

#: the devices the entry points run on (every tensor of a run lives on one of them)
DEVICES = ("cpu", "cuda")


def check_device(device, arg: str = "device") -> str:
    """``device`` if it is one of :data:`DEVICES` and usable here; ``ValueError`` naming ``arg``
    otherwise (a ``TypeError`` for a non-string)."""
    if not isinstance(device, str):
        raise TypeError(f"{arg} must be one of {', '.join(map(repr, DEVICES))}, got "
                        f"{type(device).__name__}")
    if device not in DEVICES:
        raise ValueError(f"{arg} must be one of {', '.join(map(repr, DEVICES))}, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{arg} 'cuda' requested but CUDA is not available here "
                         "(torch.cuda.is_available() is False)")
    return device
