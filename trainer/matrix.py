r"""The cross-dataset matrix: several exported detectors on several prepared datasets, one command.

    dfd-matrix --model=runs/r50 --model=effnet=runs/effnet/export \
        --dataset=demo_out/data \
        --dataset=label=videos,data_dir=gs://b/tfds,dataset=my_videos,split=test \
        --output_dir=runs/matrix

A detector is judged by how it does on data it was not trained beside: other
generators, other datasets. This scores every export on every dataset split
and writes a matrix (rows: models, columns: datasets) of ROC-AUC and EER,
frame-level and, for datasets whose examples carry `video_id`, video-level
(frames aggregated per track and per video by `trainer.aggregation`), the two
numbers DeepfakeBench reports side by side.

Each cell is computed by `dfd-evaluate`'s own code (`score_split` on the
exported SavedModel and `split_figures`, in `trainer.evaluation.evaluate_lib`),
so a cell equals what `dfd-evaluate` reports for that export, dataset and
split. Accuracy is at each export's own threshold (its detector.json); AUC and
EER need none.

Writes to `--output_dir`: matrix.json, matrix.md, matrix.png (heat maps) and
scores/<model>__<dataset>.csv (one row per image, as dfd-evaluate's scores.csv).
"""

from __future__ import annotations

from preprocessing import quiet_tensorflow  # noqa: F401  (first: see its docstring)

# isort: split
from collections.abc import Sequence
import sys

from absl import app, flags
import matplotlib

matplotlib.use("Agg")  # Headless: reports are written on servers and in CI.

from preprocessing import cli, schema  # noqa: E402
from trainer.evaluation import matrix_lib

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines the command's flags; called by `run_main` only."""
    flags.DEFINE_multi_string(
        "model",
        [],
        "A detector, repeatable: [LABEL=]PATH, PATH an export or the trainer's model_dir "
        "holding export/. The label defaults to the model_dir's folder name.",
    )
    flags.DEFINE_multi_string(
        "dataset",
        [],
        "A prepared dataset split, repeatable: [LABEL=]DATA_DIR, or "
        "label=L,data_dir=D,dataset=TFDS_NAME,split=S (defaults: dataset "
        f"{schema.DATASET_NAME}, split --split, label the data_dir's folder name).",
    )
    flags.DEFINE_string("split", "test", "Split scored where a --dataset does not name one.")
    flags.DEFINE_string(
        "output_dir", None, "Where matrix.json, matrix.md, matrix.png and scores/ go."
    )
    flags.DEFINE_integer("batch_size", 64, "Images per call of the serving signature.")
    flags.DEFINE_integer(
        "max_examples", 0, "Score at most this many images per split (0 = all); for quick looks."
    )


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not FLAGS.model or not FLAGS.dataset:
        raise app.UsageError("Pass at least one --model and one --dataset (each repeatable).")
    if not FLAGS.output_dir:
        raise app.UsageError("--output_dir is required: where the matrix is written.")
    result = matrix_lib.run(
        [matrix_lib.parse_model(text) for text in FLAGS.model],
        [matrix_lib.parse_dataset(text, FLAGS.split) for text in FLAGS.dataset],
        FLAGS.output_dir,
        batch_size=FLAGS.batch_size,
        max_examples=FLAGS.max_examples,
    )
    print(matrix_lib.summary(result, FLAGS.output_dir))


def run_main():
    define_flags()
    cli.run(main, module=sys.modules[__name__], prog="dfd-matrix")


if __name__ == "__main__":
    run_main()
