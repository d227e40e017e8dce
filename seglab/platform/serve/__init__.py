"""serve/ — using a trained model: predict on files, export it, keep it in MLflow's model registry.

    source.py    CHECKPOINT_OR_RUN -> a model ready to predict (seglab or official checkpoint, MLflow run
                 id, models:/NAME/VERSION), with its classes, palette and preprocessing
    inputs.py    `seglab predict`'s INPUTs (images, folders, globs, videos, folders of frames), checked first
    predict.py   label maps (the inference `seglab eval` uses), overlays, a method's maps, videos; atomic files
    export.py    ONNX / TorchScript files with their preprocessing in the metadata, verified against eager PyTorch
    pyfunc.py    the MLflow pyfunc model: a batch of RGB images -> label maps
    registry.py  at the end of a sweep: the selected configuration's best checkpoint, registered under the sweep's name

The commands are in cli/ (predict, export, ui); the sweep calls :func:`registry.register_sweep_model`.
"""
