"""Training: one run's loop, with no Ray in it, and the adapter that runs it on Ray Train.

* :mod:`.trainer` -- :class:`~.trainer.Trainer`: ``train_step`` / ``train_epoch`` / ``validate`` /
  ``state_dict`` / ``fit``, the selection of the run's checkpoint and the report split's scoring;
* :mod:`.hooks` -- the behaviours around the loop (stop marker, time budget, fail-once, restarts,
  best checkpoint, pictures, samplers, progress, tracking), detectron2's ``HookBase`` shape;
* :mod:`.data` -- the run's loaders and what its evaluators need to know;
* :mod:`.schedule` -- optimiser and poly learning rate (over steps or a training-time budget);
* :mod:`.sampler` -- seeded, rank-independent sampling and augmentation seeds;
* :mod:`.speed` -- mixed precision, channels_last, torch.compile, SyncBatchNorm;
* :mod:`.worker` -- ``train_loop_per_worker``: the Trainer inside a Ray Train worker (DDP, Ray's
  checkpoints and reports, the trial's hooks).
"""
