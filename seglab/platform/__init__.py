"""seglab's platform: the rooms between the experiment configs and the core (models, losses, data, metrics).

    config.py build.py  config -> typed values -> core objects; nothing else
    comm.py             every collective (all-reduce, gather, buffer broadcast); no-ops in one process
    checkpoint.py       atomic files, checkpoint load/save, a model rebuilt from a checkpoint
    quiet.py            the environment and warning filters every seglab process gets
    train/              a Ray-free Trainer (train_step / validate / state_dict) + hooks; its Ray Train adapter
    evaluation/         evaluators, the one evaluation loop, `seglab eval`'s scoring and record
    sweep/              sweep config, plan, validation, resume state, search, phases, the trial, run_sweep
    tracking/           the MLflow store, one buffered (journaled) writer, replay of undelivered records
    monitoring/         GPU (NVML) and system samplers
    report/             rows, statistics, the comparison table, findings, plots, files, the MLflow UI
    cluster/            local loopback clusters, loopback DDP, resources, shared-storage check, Ray internals
    cli/                the `seglab` command, one module per sub-command
    methods/            one plug-in per method (OVeNet, SEMEDA, PHGMM): evaluators, pictures, stages, tables as data
    viz/                pictures (panels, colour codings, charts) drawn while training and evaluating

Data flows one way: experiments/ (Hydra) -> sweep -> trial -> train -> evaluation -> tracking; the report reads
MLflow back. Each room's ``__init__`` docstring is its map.
"""
