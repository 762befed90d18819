"""What a backup costs, and what a run leaves on disk, with the real model sizes (224 px).

    python tests/benchmarks/bench_backup.py [--repeats=3] [--backbones=resnet50,xception,...]

1. Backup cost: `trainer.training.callbacks.Backup.save` (weights + AdamW slots, HDF5,
   written beside and renamed into place, the file a resume reads) on ResNet50
   at 224 px with every layer trainable (the largest backup a run writes),
   timed `--repeats` times on this machine's CPU and disk: median and spread.
   Per 1,000 steps that is (backups per 1,000 steps) x (cost of one):
   - before: the 8-GPU flagfile's `--backup_every_steps=100`: 10 per 1,000 steps,
     whatever the hardware;
   - after: `--backup_every_seconds=600`: 1,000 / (steps per second x 600) per
     1,000 steps. Steps per second are planned from the H100 anchor in
     BENCHMARKS.md (4,861 img/s per GPU for this model, x8 GPUs, global batch
     512 = 76 steps/s); on this CPU they are measured (`--cpu_steps`, a few
     ResNet50 224 px steps at batch 8).
2. Disk: the files one run leaves per backbone (backup/, checkpoints/best.keras,
   model.keras, export/), written for a freshly built 224 px model: their size
   depends on the weights' count, not on training.

Absolute times on a shared machine are noise; the ratios are the point.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from trainer import export  # noqa: E402
from trainer import model as model_lib  # noqa: E402
from trainer.training import callbacks, train_lib
from trainer.training import config as config_lib  # noqa: E402

H100_IMAGES_PER_SECOND = 4861  # BENCHMARKS.md anchor: Keras ResNet50 train step, one H100.
GPUS, GLOBAL_BATCH = 8, 512
BEFORE_EVERY_STEPS, AFTER_EVERY_SECONDS = 100, 600


def _folder_bytes(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(
        os.path.getsize(os.path.join(root, name))
        for root, _, names in os.walk(path)
        for name in names
    )


def _compiled(backbone: str, image_size: int) -> keras.Model:
    config = config_lib.TrainConfig(
        data_dir="/unused", model_dir="/unused", backbone=backbone, weights="none"
    )
    model = model_lib.build_model(backbone, image_size=image_size, weights="none")
    phase = train_lib.plan_phases(config)[0]  # `full`: every layer trainable.
    model_lib.set_phase(model, phase.name)
    train_lib.compile_model(model, config, phase, steps_per_epoch=100)
    model.optimizer.build(model.trainable_variables)
    return model


def backup_cost(repeats: int, cpu_steps: int, workdir: str) -> dict:
    model = _compiled("resnet50", 224)
    backup = callbacks.Backup(
        os.path.join(workdir, "backup"), callbacks.TrainingState(), steps_per_epoch=10**6
    )
    backup.set_model(model)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        backup.save()
        times.append(time.perf_counter() - started)
    size = _folder_bytes(os.path.join(workdir, "backup"))
    result = {
        "backup_mb": round(size / 1e6, 1),
        "save_seconds": [round(t, 3) for t in times],
        "save_median_s": round(statistics.median(times), 3),
        "save_spread_s": round(max(times) - min(times), 3),
    }
    per_save = result["save_median_s"]
    gpu_steps_per_second = GPUS * H100_IMAGES_PER_SECOND / GLOBAL_BATCH
    rates = {"8xH100 (planned)": gpu_steps_per_second}
    if cpu_steps:
        pixels = np.random.default_rng(0).integers(0, 256, (8, 224, 224, 3), dtype=np.uint8)
        labels = np.zeros((8, 1), np.float32)
        model.train_on_batch(pixels, labels)  # Trace once.
        started = time.perf_counter()
        for _ in range(cpu_steps):
            model.train_on_batch(pixels, labels)
        rates["this CPU, batch 8 (measured)"] = cpu_steps / (time.perf_counter() - started)
    result["per_1000_steps"] = {}
    for name, steps_per_second in rates.items():
        before = (1000 / BEFORE_EVERY_STEPS) * per_save
        saves_after = 1000 / (steps_per_second * AFTER_EVERY_SECONDS)
        result["per_1000_steps"][name] = {
            "steps_per_second": round(steps_per_second, 3),
            "before_every_100_steps_s": round(before, 2),
            "after_every_600_s_s": round(saves_after * per_save, 3),
            "share_of_training_before": round(before / (before + 1000 / steps_per_second), 3),
            "share_of_training_after": round(
                saves_after * per_save / (saves_after * per_save + 1000 / steps_per_second), 4
            ),
        }
    return result


def disk_usage(backbones: list[str], workdir: str) -> dict:
    sizes = {}
    for backbone in backbones:
        folder = os.path.join(workdir, backbone)
        model = _compiled(backbone, 224)
        backup = callbacks.Backup(
            os.path.join(folder, "backup"), callbacks.TrainingState(), steps_per_epoch=10**6
        )
        backup.set_model(model)
        backup.save()
        callbacks.inference_model(model).save(os.path.join(folder, "model.keras"))
        export.export_detector(
            model,
            os.path.join(folder, "export"),
            export.DetectorMetadata(image_size=224, backbone=backbone),
        )
        parts = {
            "weights_mb": sum(w.nbytes for w in model.get_weights()) / 1e6,
            "backup_mb": _folder_bytes(os.path.join(folder, "backup")) / 1e6,
            "model_keras_mb": _folder_bytes(os.path.join(folder, "model.keras")) / 1e6,
            "export_mb": _folder_bytes(os.path.join(folder, "export")) / 1e6,
        }
        # checkpoints/best.keras is the same inference model as model.keras.
        parts["best_keras_mb"] = parts["model_keras_mb"]
        parts["run_total_mb"] = (
            parts["backup_mb"] + 2 * parts["model_keras_mb"] + parts["export_mb"]
        )
        sizes[backbone] = {k: round(v, 1) for k, v in parts.items()}
        shutil.rmtree(folder, ignore_errors=True)
        keras.backend.clear_session()
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cpu_steps", type=int, default=3)
    parser.add_argument("--backbones", default="resnet50,xception,efficientnetv2s")
    parser.add_argument("--skip_disk", action="store_true")
    parser.add_argument("--output_dir", default="", help="Also write results.json here.")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="bench_backup-")
    try:
        report = {"backup": backup_cost(max(3, args.repeats), args.cpu_steps, workdir)}
        if not args.skip_disk:
            report["disk_224px"] = disk_usage(args.backbones.split(","), workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(report, indent=2))
    if args.output_dir:
        os.makedirs(args.output_dir, exist_ok=True)
        with open(os.path.join(args.output_dir, "results.json"), "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
