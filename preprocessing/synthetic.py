r"""Writes a small SYNTHETIC real-vs-fake face dataset in the exact Kaggle layout.

    python -m preprocessing.synthetic --output_dir=/tmp/faces --image_size=64 \
        --num_per_class_per_split=train=1000,valid=200,test=200 --seed=0

Output (what the Kaggle "140k Real and Fake Faces" download looks like):

    <output_dir>/real_vs_fake/real-vs-fake/{train,valid,test}/{real,fake}/<id>.jpg
    <output_dir>/{train,valid,test}.csv    header ",original_path,id,label,label_str,path",
                                           label 1 = real, 0 = fake (Kaggle's convention)

Why it exists: the demo and the tests need data that a model can genuinely
learn from without a Kaggle account. Both classes draw their "faces" (simple
cartoon heads: skin, hair, eyes, mouth, lighting) from the same distribution,
so content says nothing about the label. What differs is how each image was
"made", which is what real detectors key on:

- real: rendered at full resolution, resampled with a phase-balanced bilinear
  kernel, given white sensor noise at full resolution, JPEG-compressed once;
- fake: noise added at half resolution (so it is spatially correlated), then
  upsampled like a generator's decoder, by zero insertion and an uneven 3x3
  transposed-convolution kernel whose per-phase gains differ: the classic
  checkerboard, a peak at the Nyquist frequency of the spectrum; then
  compressed twice (a lower-quality JPEG, re-saved at the real class's quality).

The checkerboard is a multiplicative gain of 20-40% between pixel phases, so
it survives the trainer's mild crops and rescaling (as beats in the spectrum).
It is that strong on purpose: at 8-16% a ResNet50 trained from scratch for the
demo's few hundred CPU steps barely separates the classes; at 20-40% it does
within the demo's budget (`make demo` prints the figures of its run).
It is NOT a real deepfake dataset: a model trained on it says nothing about
real generated faces.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import sys

from absl import app, flags, logging
import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from preprocessing import cli, paths, schema, tf_startup

KAGGLE_IMAGE_ROOT = "real_vs_fake/real-vs-fake"
CSV_HEADER = ["", "original_path", "id", "label", "label_str", "path"]
SPLIT_FOLDERS = ("train", "valid", "test")
_ID_ALPHABET = np.array(list("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
_SKIN_TONES = np.array(
    [
        [255, 224, 196],
        [241, 194, 160],
        [224, 172, 125],
        [198, 134, 90],
        [141, 85, 54],
        [94, 60, 40],
    ],
    dtype=np.float32,
)
_HAIR_COLOURS = np.array(
    [[20, 15, 10], [60, 40, 25], [110, 75, 40], [170, 130, 80], [200, 180, 140], [120, 120, 120]],
    dtype=np.float32,
)


def render_face(rng: np.random.Generator, size: int) -> np.ndarray:
    """A cartoon face, float32 [size, size, 3] in [0, 255]; same distribution for both classes.

    The steps draw from `rng` in a fixed order: a given seed gives the same face.
    """
    scale = 2  # Supersampling, for smooth (anti-aliased) edges.
    big = size * scale
    canvas = _gradient_background(rng, big)
    painter = _Painter(ImageDraw.Draw(canvas), rng, big)
    head = _draw_head(painter)
    eye_y, eye_r = _draw_eyes(painter, head)
    _draw_nose_and_mouth(painter, head, eye_y, eye_r)
    canvas = canvas.filter(ImageFilter.GaussianBlur(radius=scale * 0.6)).resize(
        (size, size), Image.Resampling.LANCZOS
    )
    return _light(rng, np.asarray(canvas, dtype=np.float32))


def _gradient_background(rng: np.random.Generator, big: int) -> Image.Image:
    """A vertical blend between two random colours."""
    top, bottom = rng.uniform(40, 230, 3), rng.uniform(40, 230, 3)
    ramp = np.linspace(0.0, 1.0, big, dtype=np.float32)[:, None, None]
    background = top * (1 - ramp) + bottom * ramp
    return Image.fromarray(np.broadcast_to(background, (big, big, 3)).astype(np.uint8))


class _Painter:
    """Draws on the supersampled canvas in coordinates relative to its side (0..1)."""

    def __init__(self, draw: ImageDraw.ImageDraw, rng: np.random.Generator, big: int):
        self.draw, self.rng, self.big = draw, rng, big

    def box(self, cx, cy, rx, ry) -> list[float]:
        big = self.big
        return [big * (cx - rx), big * (cy - ry), big * (cx + rx), big * (cy + ry)]

    def colour(self, base, jitter) -> tuple[int, ...]:
        return tuple(int(v) for v in np.clip(base + self.rng.normal(0, jitter, 3), 0, 255))


@dataclasses.dataclass(frozen=True)
class _Head:
    """Where the face ellipse is (centre, radii, relative to the side) and its colours."""

    cx: float
    cy: float
    rx: float
    ry: float
    hair: tuple[int, ...]
    skin_base: np.ndarray


def _draw_head(painter: _Painter) -> _Head:
    """Hair, shoulders and the skin ellipse; returns where the face is."""
    rng, big, draw = painter.rng, painter.big, painter.draw
    cx, cy = 0.5 + rng.normal(0, 0.03), 0.52 + rng.normal(0, 0.03)
    rx, ry = rng.uniform(0.25, 0.33), rng.uniform(0.32, 0.41)
    hair = painter.colour(_HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))], 12)
    skin_base = _SKIN_TONES[rng.integers(len(_SKIN_TONES))]
    skin = painter.colour(skin_base, 10)
    draw.ellipse(
        painter.box(cx, cy - ry * rng.uniform(0.15, 0.35), rx * 1.12, ry * 0.95), fill=hair
    )
    draw.rectangle(
        [big * 0.0, big * (cy + ry * 0.85), big, big],
        fill=painter.colour(rng.uniform(30, 220, 3), 1),
    )  # Shoulders / clothes.
    draw.ellipse(painter.box(cx, cy, rx, ry), fill=skin)
    return _Head(cx=cx, cy=cy, rx=rx, ry=ry, hair=hair, skin_base=skin_base)


def _draw_eyes(painter: _Painter, head: _Head) -> tuple[float, float]:
    """Two eyes with irises and brows; returns (eye height, eye radius) for the nose."""
    rng, big, draw = painter.rng, painter.big, painter.draw
    eye_y, eye_dx = head.cy - head.ry * rng.uniform(0.1, 0.25), head.rx * rng.uniform(0.35, 0.5)
    eye_r = head.rx * rng.uniform(0.12, 0.18)
    iris = painter.colour(rng.uniform(20, 140, 3), 5)
    for side in (-1, 1):
        ex = head.cx + side * eye_dx
        draw.ellipse(painter.box(ex, eye_y, eye_r, eye_r * 0.6), fill=(245, 245, 240))
        draw.ellipse(painter.box(ex, eye_y, eye_r * 0.5, eye_r * 0.5), fill=iris)
        draw.line(
            [
                big * (ex - eye_r),
                big * (eye_y - eye_r * 1.4),
                big * (ex + eye_r),
                big * (eye_y - eye_r * 1.6),
            ],
            fill=head.hair,
            width=max(1, int(big * 0.012)),
        )
    return eye_y, eye_r


def _draw_nose_and_mouth(painter: _Painter, head: _Head, eye_y: float, eye_r: float) -> None:
    rng, big, draw = painter.rng, painter.big, painter.draw
    cx, cy, rx, ry = head.cx, head.cy, head.rx, head.ry
    draw.line(
        [big * cx, big * (eye_y + eye_r), big * (cx + rx * 0.08), big * (cy + ry * 0.25)],
        fill=painter.colour(head.skin_base * 0.75, 5),
        width=max(1, int(big * 0.01)),
    )
    mouth_y, mouth_w = cy + ry * rng.uniform(0.45, 0.6), rx * rng.uniform(0.3, 0.5)
    draw.ellipse(
        painter.box(cx, mouth_y, mouth_w, ry * rng.uniform(0.04, 0.1)),
        fill=painter.colour(np.array([170, 60, 70]), 15),
    )


def _light(rng: np.random.Generator, pixels: np.ndarray) -> np.ndarray:
    """Directional lighting, so that brightness varies smoothly across the face."""
    size = pixels.shape[0]
    angle = rng.uniform(0, 2 * np.pi)
    grid = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    light = 1.0 + rng.uniform(0.05, 0.25) * (
        np.cos(angle) * grid[None, :] + np.sin(angle) * grid[:, None]
    )
    return np.clip(pixels * light[:, :, None], 0, 255)


def _downsample2(pixels: np.ndarray) -> np.ndarray:
    h, w = pixels.shape[0] // 2 * 2, pixels.shape[1] // 2 * 2
    p = pixels[:h, :w]
    return 0.25 * (p[0::2, 0::2] + p[1::2, 0::2] + p[0::2, 1::2] + p[1::2, 1::2])


def _transposed_conv_up2(pixels: np.ndarray, odd_tap: float) -> np.ndarray:
    """Stride-2 transposed convolution with the separable kernel [odd_tap, 1, odd_tap].

    Output pixels at even positions receive one tap (weight 1), at odd positions
    two (2 * odd_tap): with odd_tap = 0.5 this is plain bilinear upsampling;
    any other value gives the phase-dependent gain of a generator's checkerboard.
    """
    for axis in (0, 1):
        n = pixels.shape[axis]
        shape = list(pixels.shape)
        shape[axis] = 2 * n
        up = np.zeros(shape, dtype=np.float32)
        even = [slice(None)] * pixels.ndim
        odd = [slice(None)] * pixels.ndim
        even[axis] = slice(0, None, 2)
        odd[axis] = slice(1, None, 2)
        up[tuple(even)] = pixels
        nxt = np.take(pixels, np.minimum(np.arange(n) + 1, n - 1), axis=axis)
        up[tuple(odd)] = odd_tap * (pixels + nxt)
        pixels = up
    return pixels


def _jpeg(pixels: np.ndarray, quality: int) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.clip(np.round(pixels), 0, 255).astype(np.uint8)).save(
        out, format="JPEG", quality=int(quality)
    )
    return out.getvalue()


def make_image(rng: np.random.Generator, size: int, label: int) -> bytes:
    """JPEG bytes of one synthetic image of class `label` (schema.REAL or schema.FAKE)."""
    if size < 8 or size % 2:
        raise ValueError(f"image_size={size} must be an even number >= 8.")
    face = render_face(rng, size)
    if label == schema.REAL:
        pixels = _transposed_conv_up2(_downsample2(face), 0.5)  # Phase-balanced: no checkerboard.
        pixels += rng.normal(0, rng.uniform(1.5, 3.0), pixels.shape)
        return _jpeg(pixels, rng.integers(88, 97))
    if label != schema.FAKE:
        raise ValueError(f"label={label} is not {schema.REAL} (real) or {schema.FAKE} (fake).")
    return _jpeg(generator_fingerprint(face, rng), rng.integers(88, 97))


def generator_fingerprint(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The "fake" class's traces applied to any picture: float32 [h, w, 3] in [0, 255] out.

    Noise at half resolution (spatially correlated), the uneven transposed-convolution
    upsampling of a generator's decoder (the checkerboard) and a first, lower-quality JPEG
    compression; the caller's final encode makes it double JPEG. Used on the cartoon faces
    here and, by the video tests, on frames of real photographs (whose faces MTCNN still
    finds). `pixels` is [h, w, 3] with even h and w, uint8 or float in [0, 255].
    """
    low = _downsample2(np.asarray(pixels, dtype=np.float32))
    low = low + rng.normal(0, rng.uniform(1.0, 2.0), low.shape)
    odd_tap = rng.uniform(0.6, 0.7)  # Odd phases get 20-40% more gain than even ones.
    pixels = _transposed_conv_up2(low, odd_tap) / (0.5 + odd_tap)  # Keep mean brightness.
    first = _jpeg(pixels, rng.integers(70, 86))
    return np.asarray(Image.open(io.BytesIO(first)), dtype=np.float32)


def _image_id(rng: np.random.Generator, label: int, counter: int) -> str:
    """Kaggle-like ids: real images are numbered, fake ones are 10 random letters/digits."""
    if label == schema.REAL:
        return f"{counter:05d}"
    return "".join(rng.choice(_ID_ALPHABET, 10))


def parse_counts(spec: str) -> dict[str, int]:
    """ "train=1000,valid=200,test=200" (or one number for every split) -> {folder: count}.

    Raises:
        ValueError: naming the bad part and the expected form.
    """
    spec = spec.strip()
    if spec.isdigit():
        return dict.fromkeys(SPLIT_FOLDERS, int(spec))
    counts = {}
    for part in spec.split(","):
        name, _, value = part.partition("=")
        name = name.strip()
        if name == "validation":
            name = "valid"
        if name not in SPLIT_FOLDERS or not value.strip().isdigit():
            raise ValueError(
                f"--num_per_class_per_split part {part!r} is not <split>=<count> with split in "
                f"{list(SPLIT_FOLDERS)}; e.g. train=1000,valid=200,test=200, or one number."
            )
        counts[name] = int(value)
    return counts


def write_dataset(
    output_dir: str, image_size: int = 64, counts: dict[str, int] | None = None, seed: int = 0
) -> dict[str, int]:
    """Writes the dataset (see module docstring); returns images written per split folder.

    Deterministic: the same arguments give byte-identical files. Replaces the
    `real_vs_fake/` folder and CSVs of an earlier run in `output_dir`.
    """
    counts = counts or parse_counts("train=1000,valid=200,test=200")
    tf_startup.import_tensorflow()  # Without its start-up notes on the console.
    import tensorflow as tf  # pylint: disable=import-outside-toplevel  (gs:// writes; slow import)

    root = paths.join(output_dir, KAGGLE_IMAGE_ROOT)
    if tf.io.gfile.exists(paths.join(output_dir, "real_vs_fake")):
        logging.info("Replacing the earlier synthetic set in %s.", output_dir)
        tf.io.gfile.rmtree(paths.join(output_dir, "real_vs_fake"))
    paths.ensure_writable(output_dir)
    written = {}
    next_real_number = 0
    for split_index, folder in enumerate(SPLIT_FOLDERS):
        rows = []
        for label in (schema.REAL, schema.FAKE):
            class_name = schema.LABEL_NAMES[label]
            class_dir = paths.join(root, folder, class_name)
            tf.io.gfile.makedirs(class_dir)
            for index in range(counts.get(folder, 0)):
                rng = np.random.default_rng([seed, split_index, label, index])
                image_id = _image_id(rng, label, next_real_number)
                next_real_number += label == schema.REAL
                relative = f"{folder}/{class_name}/{image_id}.jpg"
                with tf.io.gfile.GFile(paths.join(root, relative), "wb") as f:
                    f.write(make_image(rng, image_size, label))
                kaggle_label = (
                    schema.KAGGLE_CSV_REAL if label == schema.REAL else (schema.KAGGLE_CSV_FAKE)
                )
                rows.append([f"synthetic/{relative}", image_id, kaggle_label, class_name, relative])
        order = np.random.default_rng([seed, split_index]).permutation(len(rows))
        with tf.io.gfile.GFile(paths.join(output_dir, f"{folder}.csv"), "w") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(CSV_HEADER)
            for row_number, index in enumerate(order):
                writer.writerow([row_number] + rows[index])
        written[folder] = len(rows)
    with tf.io.gfile.GFile(paths.join(output_dir, "SYNTHETIC_README.txt"), "w") as f:
        f.write(
            "Synthetic data written by `python -m preprocessing.synthetic` "
            f"(image_size={image_size}, seed={seed}). Not real faces, not real deepfakes: "
            "the 'fake' class carries a transposed-convolution checkerboard and double JPEG "
            "compression. For demos and tests only.\n"
        )
    return written


FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines this tool's flags; called by `run_main`, so importing the module defines none."""
    flags.DEFINE_string(
        "output_dir", None, "Folder to write the Kaggle layout into (local or gs://)."
    )
    flags.DEFINE_integer(
        "image_size",
        64,
        "Side of the square images, in pixels (even, >= 8); the Kaggle images are 256.",
    )
    flags.DEFINE_string(
        "num_per_class_per_split",
        "train=1000,valid=200,test=200",
        "Images per class in each split folder: 'train=N,valid=N,test=N', or one N.",
    )
    flags.DEFINE_integer("seed", 0, "Random seed; the same seed gives byte-identical files.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not FLAGS.output_dir:
        raise app.UsageError("--output_dir is required, e.g. --output_dir=/tmp/faces_raw.")
    try:
        counts = parse_counts(FLAGS.num_per_class_per_split)
        written = write_dataset(FLAGS.output_dir, FLAGS.image_size, counts, FLAGS.seed)
    except ValueError as error:
        raise app.UsageError(str(error)) from error
    logging.info(
        "Wrote %s synthetic images (per split folder, both classes) to %s.",
        written,
        FLAGS.output_dir,
    )


def run_main():
    define_flags()
    cli.run(main, module=sys.modules[__name__], prog="dfd-synthetic")


if __name__ == "__main__":
    run_main()
