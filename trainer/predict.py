"""Scores image files (face crops, photos) and videos with an exported detector: `dfd-predict`.

    python -m trainer.predict --export_dir=demo_out/model/export face1.jpg photos/ clip.mp4
    python -m trainer.predict --export_dir=... --output=scores.jsonl --annotate photos/ videos/
    python -m trainer.predict --export_dir=... --explain --explain_dir=cams/ group_photo.jpg

Inputs are files, folders (searched recursively; regular files only, each real
file once, no link out of the folder unless --follow_outside_links), globs,
local or `gs://`. What happens to each (`trainer.inference.media` has the rules):

- a **crop** (an aligned face like the training images) is scored as given;
- a **photo** has its faces found (`--face_detector`: RetinaFace or MTCNN) and cropped like
  the training data;
  each face gets box, landmarks, detection confidence, `p_fake` and label, and
  the photo is as fake as its most suspicious face (`trainer.aggregation`). A
  photo without a usable face is reported as `no_face` / `face_too_small`,
  never scored as a whole frame;
- a **video** (mp4, mov, webm, avi, mkv) is sampled (`--max_frames`, or
  `--frames_per_second`; never more than 256 frames), its faces are linked
  into tracks, each track scored from its most suspicious frames and the video
  from its most suspicious track. `<media_dir>/<name>.video.json` holds the
  tracks, per-frame scores and time stamps; `<name>.timeline.png` plots them.

`--faces=auto` (default) tells crops from photos: a square image of at most
1024 pixels in which the face detector finds no face at all, or exactly one
usable face whose crop square covers most of the image, is a crop; other images
(several faces, a face too small to score, a large image) are photos. `--faces=detect` treats every
image as a photo, `--faces=none` every image as a crop (for inputs that are
all aligned faces, like the training data: no face detection at all).

Each label is taken at the threshold recorded in the export's `detector.json`
(`trainer.evaluate --write_threshold` calibrates it). A file that cannot be
read, is not an image or video, or breaks while decoding is reported on its own
line with a status and the reason, and never stops the rest of the batch.
Outputs (`--output`, `--media_dir`, `--explain_dir`) and `--explain`'s model are
checked before the first file is scored, and each record reaches `--output` as it
is made, so a late failure keeps what was done (`trainer.inference.outputs`).
Image files above `--max_file_bytes` are rejected from their size, unread.
Only the exported SavedModel is needed to score; `--explain` (Grad-CAM) also
needs the Keras model (`model.keras` beside the export).
"""

from __future__ import annotations

from preprocessing import quiet_tensorflow  # noqa: F401  (first: see its docstring)

# isort: split
from collections.abc import Sequence
import os
import sys

from absl import app, flags

from preprocessing import cli, schema
from trainer.inference import media, predict_lib

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines the command's flags; called by `run_main`, so importing this module as a
    library (tests, other tools) defines none and cannot collide with other commands."""
    _define_model_and_output_flags()
    media.define_media_flags()
    flags.adopt_module_key_flags(media)
    _define_reading_flags()
    _define_explain_flags()


def _define_model_and_output_flags() -> None:
    """The detector, its threshold, and what is written."""
    flags.DEFINE_string(
        "export_dir", None, "Exported detector: <model_dir>/export written by trainer.task."
    )
    flags.DEFINE_float(
        "threshold", None, "Override the threshold recorded in the export's detector.json."
    )
    flags.DEFINE_string(
        "output", None, "Also write the results here (.csv or .jsonl; local or gs://)."
    )
    flags.DEFINE_enum(
        "output_format",
        None,
        list(predict_lib.OUTPUT_FORMATS),
        "Format of --output when its name does not say.",
    )
    flags.DEFINE_integer("batch_size", 32, "Images (face crops) scored per model call.")
    flags.DEFINE_boolean(
        "annotate", False, "Write <media_dir>/<name>.annotated.png: each photo with its faces."
    )
    flags.DEFINE_string(
        "media_dir",
        None,
        "Where per-video JSON and timeline PNGs and --annotate PNGs go; "
        "default <output dir or cwd>/media.",
    )


def _define_reading_flags() -> None:
    """How input folders are read."""
    flags.DEFINE_boolean(
        "follow_outside_links",
        False,
        "Follow symbolic links in input folders that point outside the folder.",
    )


def _define_explain_flags() -> None:
    """Grad-CAM (--explain)."""
    flags.DEFINE_boolean(
        "explain",
        False,
        "Write a Grad-CAM overlay PNG per scored crop and per scored face of a photo "
        "(needs model.keras).",
    )
    flags.DEFINE_string(
        "explain_dir",
        None,
        "Where --explain writes its PNGs; default <output dir or cwd>/explanations.",
    )
    flags.DEFINE_string(
        "keras_model", None, "Keras model for --explain; default model.keras beside the export."
    )
    flags.DEFINE_string(
        "explain_layer",
        None,
        "Layer Grad-CAM reads; default the backbone's last 4-D output "
        "(conv5_block3_out for ResNet50).",
    )


def main(argv: Sequence[str]) -> int:
    inputs = list(argv[1:])
    if not FLAGS.export_dir:
        raise app.UsageError(
            "--export_dir is required: the <model_dir>/export folder written by trainer.task."
        )
    if not inputs:
        raise app.UsageError(
            "Give at least one image or video file, folder or glob after the flags."
        )
    if FLAGS.threshold is not None:
        schema.check_threshold(FLAGS.threshold, "--threshold")
    options = media.MediaOptions.from_flags(FLAGS)
    outcome = predict_lib.run(
        FLAGS.export_dir,
        inputs,
        threshold=FLAGS.threshold,
        output=FLAGS.output,
        output_format=FLAGS.output_format,
        batch_size=FLAGS.batch_size,
        options=options,
        annotate=FLAGS.annotate,
        media_dir=FLAGS.media_dir or (None if FLAGS.output else os.path.join(os.getcwd(), "media")),
        explain=FLAGS.explain,
        explain_dir=FLAGS.explain_dir,
        keras_model=FLAGS.keras_model,
        explain_layer=FLAGS.explain_layer,
        follow_outside_links=FLAGS.follow_outside_links,
    )
    print(predict_lib.format_table(outcome["results"], outcome["threshold"]))
    for path, written in outcome["media"]:
        what = next(
            label
            for suffix, label in (
                (".timeline.png", "timeline"),
                (".video.json", "video JSON"),
                (".annotated.png", "annotated"),
                ("", "written"),
            )
            if written.endswith(suffix)
        )
        print(f"{what}: {path} -> {written}")
    for path, png in outcome["explanations"]:
        print(f"Grad-CAM: {path} -> {png}")
    # Non-zero only when nothing at all could be judged: rejects are reported, not fatal.
    return 0 if any(result.status in predict_lib.JUDGED for result in outcome["results"]) else 1


def run_main():
    define_flags()
    cli.run(main, module=sys.modules[__name__], prog="dfd-predict")


if __name__ == "__main__":
    run_main()
