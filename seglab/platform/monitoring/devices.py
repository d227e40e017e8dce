"""Which GPU a worker uses: its CUDA ordinal(s) -> NVML device handle(s).

NVML ignores ``CUDA_VISIBLE_DEVICES`` and numbers GPUs by PCI bus id, while CUDA numbers the
visible ones fastest first unless ``CUDA_DEVICE_ORDER=PCI_BUS_ID``. The worker's CUDA ordinal
``k`` (``cuda:k``, what ``ray.train.torch.get_device()`` returns) is mapped to an NVML handle so:

- ``CUDA_VISIBLE_DEVICES`` set: its entry ``k``; a ``GPU-...`` / ``MIG-...`` UUID (or a unique UUID
  prefix, as CUDA accepts) -> by UUID; an integer -> by NVML index when ``CUDA_DEVICE_ORDER=PCI_BUS_ID``,
  else by the UUID CUDA reports for ``cuda:k`` (``torch.cuda.get_device_properties(k).uuid``), and
  only if that is unknown by NVML index, with one warning that it may be another GPU;
- unset: ``cuda:k`` is physical device ``k`` in CUDA's order: the same rules with entry ``k``.

Only the standard library is imported at module level (``torch`` when asked for CUDA's view).
"""
from __future__ import annotations

import re
from typing import Any, Callable, List, Mapping, Optional, Sequence, Tuple

from seglab.platform.monitoring.messages import say_once


def nvml_text(value: Any) -> str:
    """NVML strings (bytes in older pynvml versions) -> str."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def visible_entries(env: Mapping[str, str]) -> Optional[List[str]]:
    """The entries of ``CUDA_VISIBLE_DEVICES`` as CUDA reads them (UUIDs kept, integers normalised,
    the list cut at the first entry CUDA would not accept), or None when the variable is unset."""
    value = env.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    entries: List[str] = []
    for raw in value.split(","):
        entry = raw.strip()
        if entry.startswith(("GPU-", "MIG-")):
            entries.append(entry)
            continue
        number = re.match(r"\+?\d+", entry)  # CUDA parses like strtoul: "1gpu" is 1, "-1" or "" ends the list
        if not number:
            break
        entries.append(str(int(number.group())))
    return entries


def torch_cuda_uuid(ordinal: int) -> Optional[str]:
    """The UUID CUDA reports for ``cuda:<ordinal>`` of this process, or None (no torch CUDA)."""
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        return str(torch.cuda.get_device_properties(ordinal).uuid)
    except Exception:  # noqa: BLE001 - no CUDA, an old torch, a broken driver: fall back
        return None


def _handle_by_uuid(nvml, uuid: str):
    """NVML handle of a full UUID or of a unique prefix of one (CUDA accepts prefixes)."""
    try:
        return nvml.nvmlDeviceGetHandleByUUID(uuid)
    except nvml.NVMLError:
        matches = []
        for index in range(int(nvml.nvmlDeviceGetCount())):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            if nvml_text(nvml.nvmlDeviceGetUUID(handle)).startswith(uuid):
                matches.append(handle)
        if len(matches) != 1:
            raise
        return matches[0]


def resolve_device(nvml, ordinal: int, env: Mapping[str, str],
                   cuda_uuid: Callable[[int], Optional[str]] = torch_cuda_uuid) -> Tuple[Any, str]:
    """``(NVML handle, how it was found)`` of this process's ``cuda:<ordinal>``; raises
    ``nvml.NVMLError`` when NVML does not know the device, LookupError when CUDA would not see it."""
    entries = visible_entries(env)
    if entries is not None:
        if ordinal >= len(entries):
            raise LookupError(f"cuda:{ordinal} is not among CUDA_VISIBLE_DEVICES={env.get('CUDA_VISIBLE_DEVICES')!r}")
        entry = entries[ordinal]
    else:
        entry = str(ordinal)
    if entry.startswith(("GPU-", "MIG-")):
        return _handle_by_uuid(nvml, entry), f"UUID {entry}"
    if env.get("CUDA_DEVICE_ORDER") == "PCI_BUS_ID":  # CUDA's order is NVML's
        return nvml.nvmlDeviceGetHandleByIndex(int(entry)), f"index {entry} (PCI_BUS_ID order)"
    reported = cuda_uuid(ordinal)
    if reported:
        bare = reported.split("-", 1)[1] if reported.startswith(("GPU-", "MIG-")) else reported
        candidates = [reported] if reported.startswith(("GPU-", "MIG-")) else [f"GPU-{bare}", f"MIG-{bare}"]
        for candidate in candidates:
            try:
                return _handle_by_uuid(nvml, candidate), f"CUDA's UUID {candidate}"
            except nvml.NVMLError:
                continue
    say_once(("order", entry), f"GPU {entry}: CUDA_DEVICE_ORDER is not PCI_BUS_ID and CUDA's UUID of cuda:{ordinal} "
             f"is unknown, so GPU metrics read NVML device {entry}, which can be another GPU on a machine with "
             f"mixed GPUs (set CUDA_DEVICE_ORDER=PCI_BUS_ID to be sure)")
    return nvml.nvmlDeviceGetHandleByIndex(int(entry)), f"index {entry} (order unknown)"


def cuda_ordinals(devices: Optional[Sequence[Any]], env: Mapping[str, str]) -> Tuple[List[int], str]:
    """CUDA ordinals to sample, and why there are none. ``devices``: ints, ``"cuda:k"`` or
    ``torch.device``; None = the device torch uses, else every entry of ``CUDA_VISIBLE_DEVICES``."""
    if devices is None:
        try:
            import torch

            if torch.cuda.is_available():
                return [int(torch.cuda.current_device())], ""
        except Exception:  # noqa: BLE001
            pass
        entries = visible_entries(env)
        if not entries:
            return [], "no CUDA device in use and CUDA_VISIBLE_DEVICES names none"
        return list(range(len(entries))), ""
    out: List[int] = []
    kinds = set()
    for d in devices:
        if isinstance(d, int):
            out.append(d)
            continue
        if hasattr(d, "type"):  # torch.device
            kind, index = d.type, d.index
        else:
            kind, _, text = str(d).partition(":")
            index = int(text) if text else None
        kinds.add(kind)
        if kind == "cuda":
            if index is None:
                try:
                    import torch

                    index = torch.cuda.current_device()
                except Exception:  # noqa: BLE001
                    index = 0
            out.append(int(index))
    return out, ("" if out else f"the worker trains on {', '.join(sorted(kinds)) or 'no device'}")
