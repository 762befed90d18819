"""Finding faces and cropping them the way the training data was cropped: one module, reused.

Scoring photos and videos (`trainer.predict`, `trainer.batch_score`) and building
training data from videos use this module, so a face is cut out the same way
when it is learned from and when it is judged.

Public API (pure numpy and Pillow over two detectors, nothing downloaded at run
time: both ship their weights inside their wheels):

- `FaceDetector(min_face_size=40, min_confidence=0.9, max_faces=16, max_side=1280,
  detector="retinaface")` (`FACE_DETECTORS`: RetinaFace-MobileNet0.25 on onnxruntime,
  `preprocessing.media.retinaface`, or `mtcnn` on TensorFlow), its
  `detect(image) -> Detections` and `detect_batch(images) -> [Detections]` (a video's
  frames in one call): `.faces` (usable faces, largest first),
  `.too_small` (faces found but smaller than `min_face_size`: report them, do not
  score them) and `.over_limit` (how many usable faces beyond `max_faces` were
  dropped). `image` is uint8 RGB [height, width, 3].
- `Face`: `box` (x1, y1, x2, y2 in pixels of the image), `landmarks` (5 (x, y)
  points in `LANDMARK_NAMES` order), `confidence` (the detector's, 0-1); `to_dict()`.
- `align(image, landmarks, size, margin=1.0) -> uint8 [size, size, 3]`: the
  similarity transform (rotation, uniform scale, shift; least squares over the
  5 points) that maps the landmarks onto `TEMPLATE`, applied with antialiasing.
- `track_faces(faces_per_frame, min_iou=0.3, max_gap=2) -> track ids per face`:
  links faces of consecutive sampled frames into tracks by box overlap.
- `iou(box_a, box_b)`.

The crop (`TEMPLATE`, `align`): the 140k dataset's images are FFHQ-style crops:
FFHQ's alignment (Karras et al., 2019, the ffhq-dataset script) takes the eye
midpoint `e`, the mouth midpoint `m`, and cuts a square rotated with the face,
centred at `e + 0.1 (m - e)`, of side `2 * max(2 * |eye to eye|, 1.8 * |e to m|)`:
about four eye distances, so the face fills the picture with the hair line and
chin inside. `TEMPLATE` is that square applied to the standard 5-point mean face
(the ArcFace/InsightFace reference landmarks), expressed in the square's unit
coordinates: eyes at about (0.38, 0.47) and (0.62, 0.47), mouth corners at
about (0.40, 0.73) and (0.60, 0.73). Fitting all 5 points to it (instead of
FFHQ's 2-point rule) keeps the framing stable when one landmark is noisy.
`margin` > 1 zooms out (1.2 shows 20% more around the same centre).

Which size to ask for: a crop from `align` frames a face the way a *whole*
training image does, before any crop of the trainer's. The exported detector
then applies its own evaluation centre crop (`trainer.export`, 87.5%) and
resizes, exactly as it did to the validation images; so scoring asks for
`round(image_size / 0.875)` pixels (256 for a 224-px model: the 140k images'
own size) and a dataset build asks for the size of its training images (256).
"""

from __future__ import annotations

from collections.abc import Sequence
import dataclasses
import math
import threading

import numpy as np
from PIL import Image

LANDMARK_NAMES: tuple[str, ...] = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
"""Landmark order. "left" is the image's left (smaller x), as MTCNN reports them."""

# The 5-point mean face of ArcFace/InsightFace, in its 112x112 reference crop
# (x, y per landmark, LANDMARK_NAMES order): the usual canonical template.
_REFERENCE_POINTS_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ]
)

DEFAULT_MIN_FACE_SIZE = 40
DEFAULT_MIN_CONFIDENCE = 0.9
DEFAULT_MAX_FACES = 16
DEFAULT_MAX_SIDE = 1280
# The smallest face MTCNN is asked to find (its own default), in pixels of the searched image.
# (mtcnn 1.0.0 finds nothing at all in group_photo() with min_face_size >= 30: its pyramid is
# only reliable at the default; faces under `min_face_size` are reported as too small.)
_MTCNN_MIN_FACE_SIZE = 20
FACE_DETECTORS: tuple[str, ...] = ("retinaface", "mtcnn")
# RetinaFace: the same faces as MTCNN on every test photo at a tenth of its time (BENCHMARKS.md).
DEFAULT_FACE_DETECTOR = "retinaface"
# RetinaFace searches an image shrunk so that a face of `min_face_size` spans this many pixels:
# RetinaFace-MobileNet0.25 finds faces of about 25 px and more reliably (its smallest anchors
# are 16 px; on the test photos a 42-px face at 28 px was found, at 25 px missed).
RETINAFACE_SEARCH_FACE = 32
# Frames per RetinaFace call: a video chunk's frames go through in one or two calls.
_RETINAFACE_BATCH = 8
# Smaller searched images hold no face RetinaFace can find (its smallest anchor is 16 px).
_RETINAFACE_MIN_SIDE = 16


def ffhq_square(landmarks) -> np.ndarray:
    """FFHQ's crop square for 5 landmarks: its 4 corners (top-left, bottom-left,
    bottom-right, top-right), in the landmarks' pixel coordinates."""
    points = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    eye_left, eye_right = points[0], points[1]
    eye_avg = (eye_left + eye_right) / 2
    mouth_avg = (points[3] + points[4]) / 2
    eye_to_eye = eye_right - eye_left
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    centre = eye_avg + eye_to_mouth * 0.1
    return np.stack([centre - x - y, centre - x + y, centre + x + y, centre + x - y])


def _template() -> np.ndarray:
    corners = ffhq_square(_REFERENCE_POINTS_112)
    origin, x_edge, y_edge = corners[0], corners[3] - corners[0], corners[1] - corners[0]
    side = np.hypot(*x_edge)
    relative = _REFERENCE_POINTS_112 - origin
    return np.stack([relative @ x_edge / side**2, relative @ y_edge / side**2], axis=1)


TEMPLATE: np.ndarray = _template()
"""The canonical face: 5 landmarks in unit coordinates of the crop (x right, y down)."""


@dataclasses.dataclass(frozen=True)
class Face:
    """One detected face, in pixels of the image it was found in."""

    box: tuple[float, float, float, float]  # x1, y1, x2, y2
    landmarks: tuple[tuple[float, float], ...]  # 5 (x, y), LANDMARK_NAMES order
    confidence: float

    @property
    def size(self) -> float:
        """The box's shorter side: what `min_face_size` is compared with."""
        return min(self.box[2] - self.box[0], self.box[3] - self.box[1])

    def to_dict(self) -> dict:
        return {
            "box": [round(float(v), 1) for v in self.box],
            "landmarks": {
                name: [round(float(x), 1), round(float(y), 1)]
                for name, (x, y) in zip(LANDMARK_NAMES, self.landmarks)
            },
            "confidence": round(float(self.confidence), 4),
        }


@dataclasses.dataclass(frozen=True)
class Detections:
    """What `FaceDetector.detect` found in one image."""

    faces: tuple[Face, ...] = ()
    too_small: tuple[Face, ...] = ()
    over_limit: int = 0


_MTCNN = None
_MTCNN_LOCK = threading.Lock()


def _mtcnn():
    """One MTCNN per process (loading its three networks takes seconds)."""
    global _MTCNN
    with _MTCNN_LOCK:
        if _MTCNN is None:
            from mtcnn import MTCNN  # Lazy: imports TensorFlow.

            _MTCNN = MTCNN()
        return _MTCNN


def _mtcnn_rows(searched: np.ndarray, min_confidence: float) -> np.ndarray:
    """MTCNN's faces in one image as [n, 15] rows (the layout `FaceDetector._detections` reads)."""
    rows = _mtcnn().detect_faces(
        searched,
        box_format="xyxy",
        output_type="numpy",
        min_face_size=_MTCNN_MIN_FACE_SIZE,
        threshold_onet=min(min_confidence, 0.8),
    )
    # mtcnn's numpy rows: image, x1, y1, x2, y2, confidence, then the five landmark
    # x values, then their five y values.
    rows = np.asarray(rows, dtype=np.float64).reshape(-1, 16)
    points = np.stack([rows[:, 6:11], rows[:, 11:16]], axis=2).reshape(-1, 10)
    return np.concatenate([rows[:, 1:6], points], axis=1)


_ONET = None
# MTCNN's last network takes a 48x48 patch of a square around the face.
_ONET_SIDE = 48


def _onet():
    """MTCNN's ONet alone, as one traced function (a few ms a call, not ~20 eager)."""
    global _ONET
    with _MTCNN_LOCK:
        if _ONET is None:
            from mtcnn.stages import StageONet
            import tensorflow as tf  # Lazy: only the landmark step needs TensorFlow.

            model = StageONet()._model  # The Keras ONet with mtcnn's shipped weights.
            spec = tf.TensorSpec([None, _ONET_SIDE, _ONET_SIDE, 3], tf.float32)
            _ONET = tf.function(lambda patches: model(patches, training=False), [spec])
        return _ONET


def onet_landmarks(images: Sequence[np.ndarray], boxes: Sequence[tuple]) -> np.ndarray:
    """MTCNN's 5 landmarks for faces found by another detector: [n, 5, 2] image pixels.

    `boxes[i]` is (image index, x1, y1, x2, y2). Each face's square around its box
    (MTCNN's own framing for its last network) is cut, resized to 48 px and
    given to MTCNN's ONet, all faces in one call: RetinaFace's own landmarks
    under-estimate a head's roll (a 30-degree roll reads about 12), ONet's do not,
    so a face is aligned the same whichever detector found it.
    """
    squares, patches = [], []
    for index, x1, y1, x2, y2 in boxes:
        side = max(x2 - x1, y2 - y1)
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        square = (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)
        # The square may reach outside the image (a face at the frame's edge): there the
        # patch is black, as MTCNN's own crop_and_resize (bilinear, no antialiasing) makes it.
        patch = Image.fromarray(images[index]).transform(
            (_ONET_SIDE, _ONET_SIDE), Image.Transform.EXTENT, square, Image.Resampling.BILINEAR
        )
        squares.append(square)
        patches.append((np.asarray(patch, dtype=np.float32) - 127.5) / 128.0)
    if not patches:
        return np.zeros((0, 5, 2))
    _, landmarks, _ = _onet()(np.stack(patches))
    landmarks = np.asarray(landmarks, dtype=np.float64)  # [n, 10]: 5 x, then 5 y, in [0, 1]
    squares = np.asarray(squares)
    sizes = squares[:, 2:3] - squares[:, 0:1] + 1.0
    xs = squares[:, 0:1] + landmarks[:, :5] * sizes
    ys = squares[:, 1:2] + landmarks[:, 5:] * sizes
    return np.stack([xs, ys], axis=2)


def _retinaface_rows(batch: np.ndarray, min_confidence: float) -> list[np.ndarray]:
    from preprocessing.media import retinaface  # Lazy: loads onnxruntime and the weights.

    return retinaface.RetinaFace.get().detect(batch, min_confidence)


class FaceDetector:
    """A face detector (`FACE_DETECTORS`) with the options every caller needs.

    Both detectors give a box, 5 landmarks (`LANDMARK_NAMES` order) and a score per
    face, and every crop is cut from the landmarks by `align`: a face is framed the
    same way whichever detector found it.

    Args:
        min_face_size: faces whose box is smaller than this (shorter side, image
            pixels) are returned in `too_small`: upscaled to the model's size
            they carry too little detail to be judged.
        min_confidence: the detector's score below which a candidate is not a face.
        max_faces: at most this many faces (the largest) per image; the rest are
            counted in `over_limit`.
        max_side: images whose longer side exceeds this are searched at this
            size (boxes and landmarks are mapped back to full resolution, and
            crops are cut from the full-resolution image). Bounds the time one
            huge photo takes.
        detector: "retinaface" (default) or "mtcnn". RetinaFace searches each image
            once, shrunk so that a face of `min_face_size` is `RETINAFACE_SEARCH_FACE`
            pixels, so its cost follows the face sizes accepted; only where that finds
            no usable face does it look again at up to `max_side`, to report faces
            too small; the 5 landmarks of its faces are MTCNN's (`onet_landmarks`).
            MTCNN searches an image pyramid down to 20 px faces at up to `max_side`,
            about ten times slower.
    """

    def __init__(
        self,
        min_face_size: int = DEFAULT_MIN_FACE_SIZE,
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
        max_faces: int = DEFAULT_MAX_FACES,
        max_side: int = DEFAULT_MAX_SIDE,
        detector: str = DEFAULT_FACE_DETECTOR,
    ):
        if min_face_size < 1 or max_faces < 1 or max_side < 64:
            raise ValueError(
                f"Need min_face_size >= 1, max_faces >= 1 and max_side >= 64; got "
                f"{min_face_size}, {max_faces}, {max_side}."
            )
        if not 0.0 <= min_confidence <= 1.0:
            raise ValueError(f"min_confidence must be in [0, 1]; got {min_confidence}.")
        if detector not in FACE_DETECTORS:
            raise ValueError(
                f"--face_detector={detector!r} is not one of {', '.join(FACE_DETECTORS)}."
            )
        self.min_face_size = min_face_size
        self.min_confidence = min_confidence
        self.max_faces = max_faces
        self.max_side = max_side
        self.name = detector

    def search_scale(self, height: int, width: int, report_small: bool = False) -> float:
        """The factor an image is shrunk by before the search (never enlarged).

        `report_small`: RetinaFace's second look at an image where the first found no
        usable face, at up to `max_side`, so that faces under `min_face_size` are found
        and reported as too small (as MTCNN's search down to 20 px does).
        """
        scale = min(1.0, self.max_side / max(height, width))
        if self.name == "retinaface" and not report_small:
            scale = min(scale, RETINAFACE_SEARCH_FACE / self.min_face_size)
        return scale

    def detect(self, image: np.ndarray) -> Detections:
        """Finds faces in one uint8 RGB image [height, width, 3]."""
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Finds faces in several images; RetinaFace runs same-sized ones (a video's
        frames) as one batch."""
        images = [_as_rgb(image) for image in images]
        scales = [self.search_scale(*image.shape[:2]) for image in images]
        found = self._search(images, scales)
        if self.name == "retinaface":
            # No usable face at the fast scale: look again at full size for small ones.
            again = [
                index
                for index, (image, detections) in enumerate(zip(images, found))
                if not detections.faces
                and self.search_scale(*image.shape[:2], report_small=True) > scales[index]
            ]
            retry = [self.search_scale(*images[i].shape[:2], report_small=True) for i in again]
            for index, detections in zip(again, self._search([images[i] for i in again], retry)):
                found[index] = detections
            found = _with_onet_landmarks(images, found)
        return found

    def _search(self, images: list[np.ndarray], scales: list[float]) -> list[Detections]:
        """Detections in each image searched at its scale."""
        searched = [_shrink(image, scale) for image, scale in zip(images, scales)]
        rows: list[np.ndarray | None] = [None] * len(images)
        if self.name == "mtcnn":
            for index, small in enumerate(searched):
                if min(small.shape[:2]) >= _MTCNN_MIN_FACE_SIZE:
                    rows[index] = _mtcnn_rows(small, self.min_confidence)
        else:
            by_shape: dict[tuple, list[int]] = {}
            for index, small in enumerate(searched):
                if min(small.shape[:2]) >= _RETINAFACE_MIN_SIDE:
                    by_shape.setdefault(small.shape, []).append(index)
            for indices in by_shape.values():
                for start in range(0, len(indices), _RETINAFACE_BATCH):
                    chunk = indices[start : start + _RETINAFACE_BATCH]
                    batch = np.stack([searched[i] for i in chunk])
                    for index, found in zip(chunk, _retinaface_rows(batch, self.min_confidence)):
                        rows[index] = found
        return [
            self._detections(found, scale) if found is not None else Detections()
            for found, scale in zip(rows, scales)
        ]

    def _detections(self, rows: np.ndarray, scale: float) -> Detections:
        """Faces from [n, 15] rows (x1, y1, x2, y2, score, 5 (x, y) landmarks) found
        in an image shrunk by `scale`, in pixels of the full image."""
        candidates = []
        for row in np.asarray(rows, dtype=np.float64).reshape(-1, 15):
            if row[4] < self.min_confidence:
                continue
            box = tuple(float(v) / scale for v in row[:4])
            points = tuple((float(x) / scale, float(y) / scale) for x, y in row[5:].reshape(5, 2))
            candidates.append(Face(box=box, landmarks=points, confidence=float(row[4])))
        candidates.sort(key=lambda face: -(face.box[2] - face.box[0]) * (face.box[3] - face.box[1]))
        usable = [face for face in candidates if face.size >= self.min_face_size]
        small = [face for face in candidates if face.size < self.min_face_size]
        return Detections(
            faces=tuple(usable[: self.max_faces]),
            too_small=tuple(small),
            over_limit=max(0, len(usable) - self.max_faces),
        )


def _with_onet_landmarks(images: list[np.ndarray], found: list[Detections]) -> list[Detections]:
    """The usable faces of every image with MTCNN's landmarks (`onet_landmarks`), one call."""
    boxes = [(i, *face.box) for i, detections in enumerate(found) for face in detections.faces]
    points = iter(onet_landmarks(images, boxes))
    return [
        dataclasses.replace(
            detections,
            faces=tuple(
                dataclasses.replace(face, landmarks=tuple(map(tuple, next(points).tolist())))
                for face in detections.faces
            ),
        )
        for detections in found
    ]


def _shrink(image: np.ndarray, scale: float) -> np.ndarray:
    if scale >= 1.0:
        return image
    height, width = image.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(
        Image.fromarray(image).resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    )


def _as_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"Expected a uint8 RGB image [height, width, 3]; got {image.dtype} {image.shape}."
        )
    return image


def similarity_transform(source, target) -> np.ndarray:
    """The 2x3 matrix A of the similarity (rotation, uniform scale, shift) that best
    maps `source` points onto `target` points in the least-squares sense (Umeyama, 1991):
    target ~ A @ [x, y, 1]."""
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    mean_s, mean_t = source.mean(0), target.mean(0)
    centred_s, centred_t = source - mean_s, target - mean_t
    covariance = centred_t.T @ centred_s / len(source)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1
    rotation = u @ sign @ vt
    variance = (centred_s**2).sum() / len(source)
    scale = np.trace(np.diag(singular) @ sign) / variance
    shift = mean_t - scale * rotation @ mean_s
    return np.hstack([scale * rotation, shift[:, None]])


# Largest intermediate image `align` warps to before its antialiased resize.
_MAX_WARP_SIDE = 2048


def align(image: np.ndarray, landmarks, size: int, margin: float = 1.0) -> np.ndarray:
    """Crops one face to the canonical framing (see the module docstring).

    Args:
        image: uint8 RGB [height, width, 3].
        landmarks: 5 (x, y) points in LANDMARK_NAMES order (a Face's `landmarks`).
        size: side of the square output, in pixels.
        margin: 1.0 is the training data's framing; > 1 shows more around the face.

    Returns:
        uint8 RGB [size, size, 3]. Parts of the square outside the image are
        filled by mirroring the image at its border, as FFHQ's crops are, so a
        face at the frame's edge does not get black corners the detector never
        saw in training.
    """
    image = _as_rgb(image)
    if size < 1 or margin <= 0:
        raise ValueError(f"Need size >= 1 and margin > 0; got {size}, {margin}.")
    points = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    unit = (TEMPLATE - 0.5) / margin + 0.5
    # Warp at (about) the face's own resolution, then shrink with antialiasing: a
    # direct warp from a large face to a small crop would alias.
    forward = similarity_transform(points, unit)  # image pixels -> unit square
    pixels_per_unit = 1.0 / math.sqrt(abs(np.linalg.det(forward[:, :2])))
    warp_side = int(min(_MAX_WARP_SIDE, max(size, math.ceil(pixels_per_unit))))

    corners = np.array([[0, 0, 1], [0, 1, 1], [1, 1, 1], [1, 0, 1]], dtype=np.float64)
    backward = np.linalg.inv(np.vstack([forward, [0, 0, 1]]))[:2]  # unit -> image
    quad = corners @ backward.T
    height, width = image.shape[:2]
    pad_x = int(math.ceil(max(0.0, -quad[:, 0].min(), quad[:, 0].max() - width + 1))) + 1
    pad_y = int(math.ceil(max(0.0, -quad[:, 1].min(), quad[:, 1].max() - height + 1))) + 1
    pad_x, pad_y = min(pad_x, 4 * width), min(pad_y, 4 * height)
    source = image
    if pad_x > 1 or pad_y > 1:
        source = np.pad(image, ((pad_y, pad_y), (pad_x, pad_x), (0, 0)), mode="symmetric")
    else:
        pad_x = pad_y = 0
    # PIL's AFFINE transform maps each output pixel (u, v) to the input pixel
    # a*u + b*v + c, d*u + e*v + f: output pixels -> unit -> image (+ padding).
    to_unit = np.array([[1.0 / warp_side, 0, 0], [0, 1.0 / warp_side, 0], [0, 0, 1]])
    output_to_image = np.vstack([backward, [0, 0, 1]]) @ to_unit
    output_to_image[0, 2] += pad_x
    output_to_image[1, 2] += pad_y
    coefficients = output_to_image[:2].reshape(-1)
    warped = Image.fromarray(source).transform(
        (warp_side, warp_side),
        Image.Transform.AFFINE,
        data=tuple(coefficients),
        resample=Image.Resampling.BILINEAR,
    )
    if warp_side != size:
        warped = warped.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None)
    return np.asarray(warped)


def iou(box_a, box_b) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    ax1, ay1, ax2, ay2 = box_a
    bx1, by1, bx2, by2 = box_b
    inter = max(0.0, min(ax2, bx2) - max(ax1, bx1)) * max(0.0, min(ay2, by2) - max(ay1, by1))
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    return float(inter / union) if union > 0 else 0.0


def track_faces(
    faces_per_frame: Sequence[Sequence[Face]], min_iou: float = 0.3, max_gap: int = 2
) -> list[list[int]]:
    """Links faces across consecutive sampled frames into tracks by box overlap.

    Greedy: in each frame, the (face, track) pairs of highest IoU are matched
    first, against each track's last box; a face that overlaps no open track by
    `min_iou` starts a new track. A track not seen for more than `max_gap`
    sampled frames is closed (a face that leaves and comes back is a new track).
    Enough for faces that move less than their own size between sampled frames;
    crossing faces may swap tracks.

    Returns:
        For each frame, the track id (0, 1, ... in order of first appearance) of
        each of its faces, in the faces' order.
    """
    last_box: dict[int, tuple] = {}
    last_seen: dict[int, int] = {}
    assignments: list[list[int]] = []
    next_id = 0
    for frame_number, faces in enumerate(faces_per_frame):
        open_tracks = [t for t in last_box if frame_number - last_seen[t] <= max_gap + 1]
        pairs = sorted(
            (
                (iou(face.box, last_box[track]), index, track)
                for index, face in enumerate(faces)
                for track in open_tracks
            ),
            reverse=True,
        )
        ids: list[int | None] = [None] * len(faces)
        taken: set[int] = set()
        for overlap, index, track in pairs:
            if overlap < min_iou:
                break
            if ids[index] is None and track not in taken:
                ids[index] = track
                taken.add(track)
        for index, face in enumerate(faces):
            if ids[index] is None:
                ids[index] = next_id
                next_id += 1
            last_box[ids[index]] = face.box
            last_seen[ids[index]] = frame_number
        assignments.append([int(i) for i in ids])
    return assignments
