"""Benchmark: training images/second on this machine's accelerators, per setting, real vs synthetic.

Run it unchanged on a 1- or 8-GPU machine (`make bench-gpu`):

    .venv/bin/python tests/benchmarks/bench_gpu.py --output_dir=bench_out/bench_gpu

For each precision (a new model each: Keras reads the policy when layers are
made), each training phase (head: backbone frozen; fine_tune: conv4 on), XLA
off/on and each --steps_per_execution, it trains the 140k recipe's model
(ResNet50, weights=None, 224 px, the recipe's augmentation in the train step)
under the default strategy (MirroredStrategy over all GPUs) through the trainer's
own code (`train_lib.fit_model`: the multi-step loop of `keras_workarounds.multi_step`
under the mirrored strategies, the replica-safe loss scaling under mixed_float16) and
reports images/second fed by:
- synthetic: in-memory uint8 tensors (`input_pipeline.build_synthetic_dataset`): the model alone;
- real: `trainer.data`'s pipeline on TFDS shards of generated JPEGs (or your
  --data_dir), decode-and-crop and JPEG re-compression on the host.
Real at ~100% of synthetic means the host keeps up. "host cores busy" is the
process's CPU time / wall time during the timed steps; "cores the pipeline
needs" is the pipeline's own CPU seconds per image (measured alone, first)
times the real-input rate: compare it with the cores you have.

The grid holds only configurations the trainer runs: XLA rows are left out where
`distribution.xla_known_to_fail` says XLA breaks (several replicas), as the trainer
never turns it on there. A row that fails anyway is printed with its error, listed
again at the end, and makes the script exit 1 (so `make bench-gpu` and `make bench`
fail loudly).

Timing: the first `steps_per_execution` steps (at least --warmup_steps) trace
and compile and are not timed; then --timed_steps steps (rounded up to whole
executions) are timed between two batch-end callbacks.

It also runs on a CPU at tiny sizes (the smoke test in `make test` runs the shipped GPU
defaults there: mixed_float16, steps_per_execution > 1, MirroredStrategy on 2 logical
CPUs), and `--cpu_replicas=N` splits the CPU into N logical devices, which is how
`make bench` measures the multi-step speed-up through the project's multi-replica loop
on the build machine (BENCHMARKS.md).
Prints Markdown tables; writes results.json to --output_dir.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from tests.benchmarks import bench_trainer  # noqa: E402
from trainer import data  # noqa: E402
from trainer import model as model_lib  # noqa: E402
from trainer.training import config as config_lib  # noqa: E402
from trainer.training import (  # noqa: E402
    distribution,
    input_pipeline,
    precision,
    train_lib,  # noqa: E402
)

# The 140k flagfiles' augmentation (deploy/configs/140k_resnet50_*.cfg).
RECIPE = dict(min_crop_area=0.25, jpeg_quality_min=60, blur_probability=0.1, color_jitter=0.1)


def _csv(kind):
    return lambda text: [kind(v) for v in text.split(",") if v]


def _on_off(text):
    return [{"on": True, "off": False}[v] for v in text.split(",") if v]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output_dir", default=os.path.join(REPO, "bench_out", "bench_gpu"))
    parser.add_argument("--data_dir", default="", help="A built TFDS data dir (default: generate).")
    parser.add_argument("--num_images", type=int, default=2048, help="JPEGs generated.")
    parser.add_argument("--jpeg_size", type=int, default=256, help="Side of generated JPEGs.")
    parser.add_argument("--model", choices=("resnet50", "tiny"), default="resnet50")
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--per_replica_batch", type=int, default=256, help="Anchors: 256.")
    parser.add_argument("--strategy", default="auto", choices=config_lib.STRATEGIES)
    parser.add_argument(
        "--precisions",
        type=_csv(str),
        default=None,
        help="Default: mixed_float16,mixed_bfloat16 on GPUs; float32 on CPU.",
    )
    parser.add_argument("--phases", type=_csv(str), default=["head", "fine_tune"])
    parser.add_argument("--jit_compile", type=_on_off, default=[False, True], help="off,on")
    parser.add_argument(
        "--steps_per_execution",
        type=_csv(int),
        default=[1, 32],
        help="Values compared; keep the trainer's default among them.",
    )
    parser.add_argument("--inputs", type=_csv(str), default=["synthetic", "real"])
    parser.add_argument("--timed_steps", type=int, default=128, help="Per timed window.")
    parser.add_argument("--repeats", type=int, default=3, help="Timed windows per setting.")
    parser.add_argument("--warmup_steps", type=int, default=8)
    parser.add_argument("--pipeline_batches", type=int, default=30, help="For the CPU cost.")
    parser.add_argument(
        "--no_augmentation",
        action="store_true",
        help="The recipe's crop, JPEG re-compression, blur and colour jitter off; the train "
        "step's random flip (on the accelerator) stays.",
    )
    parser.add_argument(
        "--cpu_replicas",
        type=int,
        default=0,
        help="Split the CPU into this many logical devices first (0: as it is); with "
        "--strategy=mirrored, measures the multi-replica loop on a CPU.",
    )
    return parser.parse_args(argv)


# ----------------------------------------------------------------------------- model


def tiny_model(image_size: int) -> keras.Model:
    """A small CNN shaped like `model.build_model`'s output, with ResNet50's stage names.

    Small enough that the framework, not the arithmetic, sets the step time;
    named so that `model.set_phase` (head / fine_tune from conv4) works on it.
    """
    inputs = keras.Input((image_size, image_size, 3), name="backbone_input")
    x = inputs
    for index, name in enumerate(("conv1", "conv2_block1", "conv4_block1", "conv5_block1")):
        x = keras.layers.Conv2D(8 * (index + 1), 3, strides=2, padding="same", name=f"{name}_conv")(
            x
        )
        x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
        x = keras.layers.ReLU(name=f"{name}_relu")(x)
    backbone = keras.Model(inputs, x, name="resnet50")
    images = keras.Input((image_size, image_size, 3), dtype="uint8", name="images")
    x = model_lib.ImagePreprocessing("caffe", name="preprocessing")(images)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(backbone(x))
    logits = keras.layers.Dense(1, dtype="float32", name=model_lib.LOGIT_LAYER)(x)
    return keras.Model(images, logits, name="dfd_tiny")


def build(args, config) -> keras.Model:
    if args.model == "tiny":
        return tiny_model(config.image_size)
    return model_lib.build_model("resnet50", image_size=config.image_size, weights="none")


def compile_for(fit_model, config, phase: str, *, steps_per_execution: int) -> None:
    """The trainer's own `train_lib.compile_model` (optimizer with its loss scaling, loss,
    metrics) for `phase`, with `steps_per_execution` and `config.jit_compile`."""
    train_lib.compile_model(
        fit_model,
        config,
        train_lib.Phase(phase, 0, 1, config.learning_rate),
        1000,
        steps_per_execution=steps_per_execution,
        jit_compile=bool(config.jit_compile),
    )


# ----------------------------------------------------------------------------- timing


class ExecutionTimer(keras.callbacks.Callback):
    """(step, wall time, process CPU time) at each batch end (one per execution)."""

    def __init__(self):
        super().__init__()
        self.marks = []

    def on_train_batch_end(self, batch, logs=None):
        self.marks.append((batch, time.perf_counter(), time.process_time()))


def timed_fit(fit_model, dataset, *, batch: int, steps_per_execution: int, args) -> dict:
    """Trains warm-up + --repeats windows of timed steps in one `fit`; median and range.

    Batch-end callbacks fire once per execution, so windows are whole executions.
    """
    spe = steps_per_execution
    warmup = -(-max(args.warmup_steps, spe) // spe)  # Executions, the first one traces.
    timed = -(-args.timed_steps // spe)
    timer = ExecutionTimer()
    fit_model.fit(
        dataset,
        steps_per_epoch=(warmup + args.repeats * timed) * spe,
        epochs=1,
        callbacks=[timer],
        shuffle=False,
        verbose=0,
    )
    marks = timer.marks
    rates, busy = [], []
    for window in range(args.repeats):
        start, end = marks[warmup - 1 + window * timed], marks[warmup - 1 + (window + 1) * timed]
        steps, wall, cpu = end[0] - start[0], end[1] - start[1], end[2] - start[2]
        rates.append(steps * batch / wall)
        busy.append(cpu / wall)
    return {
        "images_per_second": statistics.median(rates),
        "images_per_second_range": [min(rates), max(rates)],
        "timed_steps": timed * spe,
        "repeats": args.repeats,
        "host_cores_busy": statistics.median(busy),
    }


def pipeline_cost(config, builder, input_batch: int, batches: int) -> dict:
    """Host CPU seconds per image of the real pipeline alone (median of 3 windows)."""
    dataset = input_pipeline.build_dataset("train", config, training=True, builder=builder)
    iterator = iter(dataset)
    for _ in range(3):
        next(iterator)
    costs, rates = [], []
    for _ in range(3):
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(batches):
            next(iterator)
        images = batches * input_batch
        costs.append((time.process_time() - cpu) / images)
        rates.append(images / (time.perf_counter() - wall))
    del iterator
    return {
        "cpu_seconds_per_image": statistics.median(costs),
        "cpu_seconds_per_image_range": [min(costs), max(costs)],
        "images_per_second_alone": statistics.median(rates),
    }


# ----------------------------------------------------------------------------- main


def grid(args, strategy, precisions) -> tuple[list[dict], list[str]]:
    """The rows to run, and why any asked-for row was left out (the trainer would not run it)."""
    rows, left_out = [], []
    for policy in precisions:
        for phase in args.phases:
            for jit in args.jit_compile:
                if jit and distribution.xla_known_to_fail(strategy):
                    note = (
                        f"xla=on rows: XLA under {strategy.num_replicas_in_sync} replicas is "
                        "known to fail (distribution.xla_known_to_fail); the trainer never "
                        "turns it on there"
                    )
                    if note not in left_out:
                        left_out.append(note)
                    continue
                for spe in args.steps_per_execution:
                    for source in args.inputs:
                        rows.append(
                            {
                                "precision": policy,
                                "phase": phase,
                                "jit_compile": jit,
                                "steps_per_execution": spe,
                                "input": source,
                            }
                        )
    return rows, left_out


def run_row(row, model, strategy, base, dataset_for, args) -> None:
    """Trains and times one row through the trainer's fit model; errors go into the row."""
    try:
        model_lib.set_phase(model, row["phase"], fine_tune_from="conv4")
        config = dataclasses.replace(base, jit_compile=row["jit_compile"])
        fit_model = train_lib.fit_model(model, strategy, config)
        with strategy.scope():
            compile_for(
                fit_model, config, row["phase"], steps_per_execution=row["steps_per_execution"]
            )
        row.update(
            timed_fit(
                fit_model,
                dataset_for(config, row["input"]),
                batch=base.global_batch_size,
                steps_per_execution=row["steps_per_execution"],
                args=args,
            )
        )
    except Exception as error:  # noqa: BLE001 - reported in the table, and the exit code.
        row["error"] = f"{type(error).__name__}: {str(error)[:300]}"
    fit_model = None
    gc.collect()  # Frees the optimizer slots of the last compile.


def _setup(args, strategy) -> tuple:
    """(base config, builder or None, results header) for the run."""
    kind = distribution.device_kind(strategy)
    replicas = strategy.num_replicas_in_sync
    recipe = {} if args.no_augmentation else RECIPE
    data_dir = args.data_dir
    if "real" in args.inputs and not data_dir:
        _, data_dir, _ = bench_trainer.prepare(
            args.output_dir, args.num_images, args.jpeg_size, num_shards=max(8, replicas)
        )
    base = config_lib.TrainConfig(
        data_dir=data_dir or "/unused",
        model_dir="/unused",
        weights="none",
        image_size=args.image_size,
        global_batch_size=args.per_replica_batch * replicas,
        shuffle_buffer=1000,
        epochs=1,
        **recipe,
    )
    builder = data.load_builder(data_dir) if "real" in args.inputs else None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    results = {
        "devices": strategy.extended.worker_devices,
        "device_kind": kind,
        "replicas": replicas,
        "host_cores": cores,
        "model": args.model,
        "image_size": args.image_size,
        "global_batch": base.global_batch_size,
        "augmentation": recipe or "flip only (in the train step)",
        "runs": [],
    }
    if builder is not None:
        results["pipeline"] = pipeline_cost(
            base, builder, base.global_batch_size, args.pipeline_batches
        )
    return base, builder, results


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.cpu_replicas:
        distribution.split_cpu(args.cpu_replicas)
    os.makedirs(args.output_dir, exist_ok=True)
    strategy = distribution.get_strategy(args.strategy)
    kind = distribution.device_kind(strategy)
    precisions = args.precisions or (
        ["mixed_float16", "mixed_bfloat16"] if kind == "GPU" else ["float32"]
    )
    base, builder, results = _setup(args, strategy)
    rows, results["left_out"] = grid(args, strategy, precisions)
    for note in results["left_out"]:
        print(f"  left out: {note}", flush=True)

    def dataset_for(config, source):
        if source == "synthetic":
            return strategy.distribute_datasets_from_function(
                lambda context: input_pipeline.build_synthetic_dataset(config, context)
            )
        return strategy.distribute_datasets_from_function(
            lambda context: input_pipeline.build_dataset(
                "train", config, context, training=True, builder=builder
            )
        )

    for policy in precisions:
        precision.set_policy(policy, kind)
        try:
            with strategy.scope():
                model = build(args, base)  # A new model per policy: layers read it when made.
            for row in (r for r in rows if r["precision"] == policy):
                run_row(row, model, strategy, base, dataset_for, args)
                results["runs"].append(row)
                print(_row_text(row), flush=True)
        finally:
            keras.mixed_precision.set_global_policy("float32")
    _report(results)
    with open(os.path.join(args.output_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2, default=str)
    return _exit_code(results["runs"])


def _exit_code(runs) -> int:
    """1 when any row failed (each listed with its error on stderr), else 0."""
    failed = [r for r in runs if "error" in r]
    if not failed:
        return 0
    print(f"\nbench_gpu: {len(failed)} of {len(runs)} rows FAILED:", file=sys.stderr)
    for row in failed:
        print(f"  {_row_text(row).strip()}", file=sys.stderr)
    return 1


def _row_text(row) -> str:
    key = (
        f"{row['precision']} {row['phase']} xla={'on' if row['jit_compile'] else 'off'} "
        f"spe={row['steps_per_execution']} {row['input']}"
    )
    if "error" in row:
        return f"  {key}: FAILED {row['error']}"
    return (
        f"  {key}: {row['images_per_second']:.1f} img/s "
        f"[{row['images_per_second_range'][0]:.1f}-{row['images_per_second_range'][1]:.1f}], "
        f"host cores busy {row['host_cores_busy']:.2f}"
    )


def _report(results) -> None:
    replicas = results["replicas"]
    print(
        f"\n{results['model']} {results['image_size']}px, global batch {results['global_batch']} "
        f"on {replicas} x {results['device_kind']} ({results['host_cores']} host cores); "
        f"augmentation: {results['augmentation']}"
    )
    pipeline = results.get("pipeline")
    if pipeline:
        print(
            f"pipeline alone: {1000 * pipeline['cpu_seconds_per_image']:.2f} CPU ms/image, "
            f"{pipeline['images_per_second_alone']:.0f} images/s on the host's cores"
        )
    synthetic = {
        (r["precision"], r["phase"], r["jit_compile"], r["steps_per_execution"]): r
        for r in results["runs"]
        if r["input"] == "synthetic" and "error" not in r
    }
    print(
        "| precision | phase | XLA | steps/execution | input | images/s [range] | per replica "
        "| vs synthetic | host cores busy | cores the pipeline needs |"
    )
    print("|---|---|---|---:|---|---:|---:|---:|---:|---:|")
    for r in results["runs"]:
        head = (
            f"| {r['precision']} | {r['phase']} | {'on' if r['jit_compile'] else 'off'} | "
            f"{r['steps_per_execution']} | {r['input']} |"
        )
        if "error" in r:
            print(f"{head} failed: {r['error'][:80]} | | | | |")
            continue
        rate = r["images_per_second"]
        low, high = r["images_per_second_range"]
        base = synthetic.get(
            (r["precision"], r["phase"], r["jit_compile"], r["steps_per_execution"])
        )
        versus = f"{100 * rate / base['images_per_second']:.0f}%" if base else "n/a"
        needs = (
            f"{rate * pipeline['cpu_seconds_per_image']:.1f}"
            if pipeline and r["input"] == "real"
            else ""
        )
        print(
            f"{head} {rate:.1f} [{low:.1f}-{high:.1f}] | {rate / replicas:.1f} | {versus} | "
            f"{r['host_cores_busy']:.2f} | {needs} |"
        )


if __name__ == "__main__":
    sys.exit(main())
