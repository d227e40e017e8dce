"""What every benchmark script shares: logging its table and numbers to MLflow (no heavy imports here:
the GPU scripts run where only torch is installed)."""


def log_mlflow(run_name: str, params: dict, metrics: dict, markdown: str) -> None:
    """Log to experiment ``benchmarks`` of seglab's store; one line and nothing else without mlflow."""
    try:
        import mlflow

        from seglab.platform.tracking import ensure_experiment, tracking_uri
    except ImportError:
        print("mlflow is not importable: results not logged")
        return
    try:
        uri = tracking_uri()
        exp = ensure_experiment("benchmarks", uri)
        mlflow.set_tracking_uri(uri)
        with mlflow.start_run(experiment_id=exp, run_name=run_name):
            mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
            mlflow.log_metrics(metrics)
            mlflow.log_text(markdown, f"{run_name}.md")
        print(f"logged to MLflow experiment 'benchmarks' ({uri})")
    except Exception as exc:  # a broken store must not lose the printed numbers
        print(f"MLflow logging failed ({type(exc).__name__}: {exc}); results not logged")
