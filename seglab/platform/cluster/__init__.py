"""The cluster room: Ray clusters seglab starts or joins, and what a sweep may ask of them.

* ``local`` -- ``init_ray`` (the sweep driver's Ray: ``RAY_ADDRESS``, the cluster ``ray start``
  recorded, or a new in-process one), ``init_local``, ``loopback_env``, and the demo's head
  (``head_args`` / ``start_head`` / ``stop_head``): every socket of a local cluster on 127.0.0.1.
* ``listeners`` -- a cluster's processes (found through its session folder) and the sockets they
  listen on (``Listener``, ``is_loopback``, ``cluster_listeners``, ``find_gcs``, ``session_of``,
  ``current_session_dir``).
* ``ddp`` -- ``loopback_torch_config()``: Ray Train's gloo DDP process group on 127.0.0.1.
* ``resources`` -- ``TRIAL_DRIVER_CPU``, ``resolve_use_gpu``, ``plan_resources`` (concurrent
  trials that never deadlock), ``wait_for_free_cpus``.
* ``storage`` -- ``check_shared_storage``: every node sees the sweep's storage path.
* ``ray_internals`` -- every Ray-private API seglab uses (and only here), each checked against
  Ray 2.60 with a note on what to look at on an upgrade; ``quiet_train_worker`` is one of them.
* ``python -m seglab.platform.cluster start|stop|listeners`` (``__main__``) -- the demo's head.

Importing this package imports no Ray, torch or psutil; each module imports them where used.
"""
