"""What `dfd-train` shows: its own lines on the console, the rest in train.log, two summaries.

A training run's console shows the project's lines (the start and done
summaries, progress) and anyone's errors; TensorFlow's, TFDS' and Keras' INFO
lines go to `<model_dir>/train.log` (`configure_console`), or to the console
too with `--verbosity=1`. `start_summary` says what is about to run (devices,
batch, precision, recipe, how the run relates to model_dir); `done_summary`
what it produced.
"""

from __future__ import annotations

import logging as std_logging
import math
import os
import warnings

from absl import logging

LOG_FILENAME = "train.log"
# Modules whose log lines the default console shows; everything else (TensorFlow,
# TFDS, Keras) goes to <model_dir>/train.log, or to the console with --verbosity=1.
_PROJECT_PACKAGES = (f"{os.sep}trainer{os.sep}", f"{os.sep}preprocessing{os.sep}")


class _ProjectLinesOnly(std_logging.Filter):
    """Passes the project's own log lines, and anyone's errors."""

    def filter(self, record: std_logging.LogRecord) -> bool:
        return record.levelno >= std_logging.ERROR or any(
            part in record.pathname for part in _PROJECT_PACKAGES
        )


def configure_console(model_dir: str, verbosity: int) -> str | None:
    """Keeps the console for the project's lines; the rest goes to `<model_dir>/train.log`.

    With `verbosity` > 0 nothing is hidden. Returns the log file's path, or None
    when `model_dir` is not local (gs://: use --verbosity=1 to see everything).
    """
    import tensorflow as tf

    std_logging.captureWarnings(True)  # Python warnings become log records (py.warnings).
    log_file = None
    try:
        if "://" not in model_dir:
            os.makedirs(model_dir, exist_ok=True)
            log_file = os.path.join(model_dir, LOG_FILENAME)
            handler = std_logging.FileHandler(log_file)
    except OSError:
        log_file = None  # The model_dir check reports it, with the fix.
    if log_file:
        handler.setLevel(std_logging.INFO)
        handler.setFormatter(
            std_logging.Formatter("%(asctime)s %(levelname)s %(name)s %(filename)s] %(message)s")
        )
        std_logging.getLogger().addHandler(handler)
        std_logging.getLogger("tensorflow").addHandler(handler)
    if verbosity > 0:
        return log_file
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    logging.get_absl_handler().addFilter(_ProjectLinesOnly())
    # TensorFlow's Python logger has its own console handler.
    tf.get_logger().setLevel("INFO")
    for handler in tf.get_logger().handlers:
        if not isinstance(handler, std_logging.FileHandler):
            handler.setLevel(std_logging.ERROR)
    return log_file


def _table(title: str, rows: list[tuple[str, object]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join([f"== {title}"] + [f"  {k.ljust(width)}  {v}" for k, v in rows])


def start_summary(run_setup) -> str:
    """What is about to run: devices, batch, precision, recipe, and how it relates to model_dir."""
    from trainer.training import distribution

    config, strategy = run_setup.config, run_setup.strategy
    replicas = run_setup.replicas
    return _table(
        "Training",
        [
            ("devices", ", ".join(strategy.extended.worker_devices)),
            (
                "strategy",
                f"{distribution.display_name(strategy)} ({replicas} "
                f"{'replica' if replicas == 1 else 'replicas'}, "
                f"{'chief' if run_setup.chief else 'worker'})",
            ),
            ("global batch", config.global_batch_size),
            ("per-replica batch", config.global_batch_size // replicas),
            ("precision", run_setup.policy),
            ("XLA", "on" if run_setup.jit_compile else "off"),
            ("steps/execution", run_setup.steps_per_execution),
            ("backbone", f"{config.backbone} (weights={config.weights}, {config.image_size}px)"),
            (
                "phases",
                ", ".join(
                    f"{p.name} epochs {p.start + 1}-{p.end} lr={p.learning_rate:g}"
                    for p in run_setup.phases
                ),
            ),
            ("steps per epoch", run_setup.steps_per_epoch),
            (
                "examples",
                f"train={run_setup.train_examples} validation={run_setup.validation_examples}",
            ),
            ("run", run_setup.status),
            ("model_dir", config.model_dir),
        ],
    )


def done_summary(result: dict) -> str:
    """What the run produced: epochs, best checkpoint and metrics, threshold, throughput, paths."""
    metrics = result["best_metrics"]
    shown = ", ".join(
        f"{k}={v:.4f}"
        for k, v in sorted(metrics.items())
        if k.startswith("val_") and k != "val_examples" and math.isfinite(v)
    )
    eer = result["validation_eer"]
    chief = result["is_chief"]
    speed = result["images_per_second"]
    rows = [
        (
            "epochs",
            f"{result['epochs_completed']} of {result['epochs']} "
            f"({result['steps_per_epoch']} steps each; {result['steps_trained']} trained now)",
        ),
        ("best epoch", f"{result['best_epoch']} by {result['monitor']}"),
        ("its metrics", shown or "n/a"),
        (
            "threshold",
            f"{result['threshold']:.4f} ({result['threshold_source']}"
            + (f", EER {eer:.4f})" if eer is not None else ")"),
        ),
        (
            "exact val AUC",
            f"{result['validation_auc']:.4f} (exported weights, every validation example; the "
            "epoch val_auc is Keras' 200-bin estimate)"
            if result.get("validation_auc") is not None
            else "n/a",
        ),
        ("images/s", f"{speed:,.1f} (training steps, measured)" if speed else "n/a"),
        (
            "backups",
            f"{result['backups']} written in {result['backup_seconds']:.1f} s",
        ),
        ("export", result["export_dir"] if chief else "written by the chief"),
        ("keras model", result["keras_model"] if chief else "written by the chief"),
        ("best checkpoint", result["best_checkpoint"] if chief else "written by the chief"),
        ("history", result["history_csv"] if chief else "written by the chief"),
        ("TensorBoard", f"tensorboard --logdir {result['log_dir']}"),
    ]
    if result["early_stopped"]:
        rows.insert(1, ("early stopping", "; ".join(result["early_stopped"])))
    return _table("Done", rows)
