"""monitoring/ — what a worker's hardware does while it trains: NVML GPU sampling, system metrics,
and the trial's GPU summary.

Modules (standard library only at module level: ``pynvml``, ``torch`` and ``mlflow`` are imported
inside functions, so ``benchmarks/gpu_check.py`` runs without Ray or MLflow; nothing here imports
:mod:`seglab.platform.tracking`):

- ``messages``: the room's stderr lines (``say``, ``say_once``, ``forget_said``).
- ``devices``: which GPU a worker uses: CUDA ordinal -> NVML handle (``resolve_device``,
  ``visible_entries``, ``cuda_ordinals``, ``torch_cuda_uuid``).
- ``gpu``: :class:`~seglab.platform.monitoring.gpu.GpuMonitor`, a worker's GPU sampler thread,
  ``gpu/rank<r>/...`` metrics and tags into a sink (any object with ``log_metrics(metrics, step)``
  and ``set_tag(key, value)``, in a trial a ``tracking.writer.RunWriter``); ``gpu.start(...)``.
- ``system``: :class:`~seglab.platform.monitoring.system.SystemSampler`, ``system/...`` metrics
  (CPU, memory, disk, network) with MLflow's monitors into a sink, steps numbered on across a restart.
- ``summary``: a trial's ``gpu_util_pct`` and ``gpu_hours`` from its run's GPU metrics
  (``trial_gpu_summary``, ``report_fields`` for the table, ``log_trial_summary`` for the driver).
"""
