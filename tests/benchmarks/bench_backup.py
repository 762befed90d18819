"""What a backup costs, and what a run leaves on disk, with the real model sizes (224 px).

    python tests/benchmarks/bench_backup.py [--repeats=3] [--backbones=resnet50,xception,...]
        [--gpu_images_per_second=<make bench-gpu's figure>]

1. Backup cost: `trainer.training.callbacks.Backup.save` (weights + AdamW slots, HDF5,
   written beside, fsync'd and renamed into place, the file a resume reads) on ResNet50
   at 224 px with every layer trainable (the largest backup a run writes),
   timed `--repeats` times on this machine's CPU and local disk: median and spread.
   The fsync makes it the time to put the file on the disk, not into the page cache;
   each fsync'd save is followed by one without the fsync (the page cache only, what
   this benchmark timed before), so the two are compared in the same run.
2. Its share of training time, a formula of the step rate r (steps/s) and one backup's
   cost b (s):
   - every N steps (`--backup_every_steps`): b / (b + N / r);
   - every T seconds (`--backup_every_seconds`, the 140k flagfiles: 600): b / (b + T),
     whatever the hardware.
   r is measured on this CPU (`--cpu_steps`, a few ResNet50 224 px steps at batch 8);
   for GPUs, pass `make bench-gpu`'s images/s for ResNet50 at the 8-GPU flagfile's
   per-GPU batch (64; `--per_replica_batch=64`) as `--gpu_images_per_second`, and
   r = that / 512 (the flagfile's global batch). Nothing is planned from another
   machine's figure.
3. Disk: the files one run leaves per backbone (backup/, checkpoints/best.keras,
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

GLOBAL_BATCH = 512  # deploy/configs/140k_resnet50_8gpu.cfg: 64 per GPU x 8.
EVERY_STEPS, EVERY_SECONDS = 100, 600


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


def share(backup_s: float, steps_per_second: float) -> dict:
    """Backup seconds per 1,000 steps and share of training, every 100 steps and every 600 s."""
    by_steps = (1000 / EVERY_STEPS) * backup_s
    train_s = 1000 / steps_per_second
    by_time = train_s / EVERY_SECONDS * backup_s
    return {
        "steps_per_second": round(steps_per_second, 3),
        "every_100_steps_s": round(by_steps, 2),
        "every_600_s_s": round(by_time, 3),
        "share_every_100_steps": round(by_steps / (by_steps + train_s), 4),
        "share_every_600_s": round(backup_s / (backup_s + EVERY_SECONDS), 5),
    }


def backup_cost(repeats: int, cpu_steps: int, gpu_images_per_second: float, workdir: str) -> dict:
    model = _compiled("resnet50", 224)
    backup = callbacks.Backup(
        os.path.join(workdir, "backup"), callbacks.TrainingState(), steps_per_epoch=10**6
    )
    backup.set_model(model)
    times, unsynced = [], []
    synced = callbacks._sync  # noqa: SLF001 - swapped below for the page-cache comparison.
    for _ in range(repeats):
        # Interleaved: a save as the trainer does it (fsync'd), then one without the fsync,
        # which only fills the page cache (what this benchmark timed before the fsync).
        for sync, into in ((synced, times), (lambda path: None, unsynced)):
            callbacks._sync = sync  # noqa: SLF001
            started = time.perf_counter()
            backup.save()
            into.append(time.perf_counter() - started)
    callbacks._sync = synced  # noqa: SLF001
    size = _folder_bytes(os.path.join(workdir, "backup"))
    result = {
        "backup_mb": round(size / 1e6, 1),
        "save_seconds_fsynced": [round(t, 3) for t in times],
        "save_median_s": round(statistics.median(times), 3),
        "save_spread_s": round(max(times) - min(times), 3),
        "save_seconds_page_cache_only": [round(t, 3) for t in unsynced],
        "save_median_page_cache_only_s": round(statistics.median(unsynced), 3),
        "share_formula": "every N steps: b / (b + N / r); every T s: b / (b + T)",
    }
    per_save = result["save_median_s"]
    rates = {}
    if gpu_images_per_second:
        rates[f"GPUs at {gpu_images_per_second:g} img/s, global batch {GLOBAL_BATCH}"] = (
            gpu_images_per_second / GLOBAL_BATCH
        )
    if cpu_steps:
        pixels = np.random.default_rng(0).integers(0, 256, (8, 224, 224, 3), dtype=np.uint8)
        labels = np.zeros((8, 1), np.float32)
        model.train_on_batch(pixels, labels)  # Trace once.
        started = time.perf_counter()
        for _ in range(cpu_steps):
            model.train_on_batch(pixels, labels)
        rates["this CPU, batch 8 (measured)"] = cpu_steps / (time.perf_counter() - started)
    result["per_1000_steps"] = {name: share(per_save, r) for name, r in rates.items()}
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
    parser.add_argument(
        "--gpu_images_per_second",
        type=float,
        default=0.0,
        help="make bench-gpu's ResNet50 images/s at 64 per GPU (all GPUs together), to see "
        "the backup's share there; 0: only the formula and this CPU.",
    )
    parser.add_argument("--backbones", default="resnet50,xception,efficientnetv2s")
    parser.add_argument("--skip_disk", action="store_true")
    parser.add_argument("--output_dir", default="", help="Also write results.json here.")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="bench_backup-")
    try:
        report = {
            "backup": backup_cost(
                max(3, args.repeats), args.cpu_steps, args.gpu_images_per_second, workdir
            )
        }
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
