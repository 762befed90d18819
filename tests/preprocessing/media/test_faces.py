"""preprocessing.media.faces on real photographs (scikit-image's astronaut), with both real
face detectors (RetinaFace, the default, and MTCNN)."""

import math

import numpy as np
from PIL import Image
import pytest

from preprocessing.media import faces
from tests import media_samples


@pytest.fixture(scope="module", params=faces.FACE_DETECTORS)
def detector(request):
    """Each detector (its networks load once per process)."""
    return faces.FaceDetector(detector=request.param)


def _eye_angle(face: faces.Face) -> float:
    (lx, ly), (rx, ry) = face.landmarks[0], face.landmarks[1]
    return math.degrees(math.atan2(ry - ly, rx - lx))


def test_template_is_the_ffhq_framing_of_the_reference_face():
    template = faces.TEMPLATE
    # Eyes level and symmetric, mouth below the nose below the eyes, inside the square.
    assert template[0, 1] == pytest.approx(template[1, 1], abs=0.01)
    assert template[0, 0] + template[1, 0] == pytest.approx(1.0, abs=0.01)
    assert template[0, 1] < template[2, 1] < template[3, 1] < 1.0
    # FFHQ: the side is about four eye distances (2 * max(2 e, 1.8 m)).
    eye_distance = template[1, 0] - template[0, 0]
    assert 1 / 4.4 < eye_distance < 1 / 3.6
    corners = faces.ffhq_square(template * 100)
    np.testing.assert_allclose(corners[0], [0, 0], atol=1e-6)
    np.testing.assert_allclose(corners[2], [100, 100], atol=1e-6)


def test_similarity_transform_recovers_a_known_one():
    angle, scale, shift = math.radians(30), 2.5, np.array([40.0, -7.0])
    rotation = scale * np.array(
        [[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]
    )
    source = faces.TEMPLATE * 50
    target = source @ rotation.T + shift
    matrix = faces.similarity_transform(source, target)
    np.testing.assert_allclose(matrix, np.hstack([rotation, shift[:, None]]), atol=1e-9)


def test_align_undoes_a_rotation_and_scale():
    # A picture drawn in template coordinates, rotated and shrunk into a bigger one:
    # aligning with the moved landmarks gives the picture back.
    rng = np.random.default_rng(0)
    original = np.asarray(
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).resize(
            (128, 128), Image.Resampling.BILINEAR
        )
    )
    angle, scale, shift = math.radians(20), 0.8, np.array([150.0, 60.0])
    forward = np.hstack(
        [
            scale
            * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]),
            shift[:, None],
        ]
    )
    inverse = np.linalg.inv(np.vstack([forward, [0, 0, 1]]))[:2]
    big = np.asarray(
        Image.fromarray(original).transform(
            (400, 300),
            Image.Transform.AFFINE,
            data=tuple(inverse.reshape(-1)),
            resample=Image.Resampling.BICUBIC,
        )
    )
    landmarks = (faces.TEMPLATE * 128) @ forward[:, :2].T + forward[:, 2]
    recovered = faces.align(big, landmarks, 128).astype(float)
    inner = (slice(16, -16), slice(16, -16))  # The corners were outside the pasted square.
    assert np.abs(recovered[inner] - original[inner]).mean() < 6.0


def test_astronaut_face_and_landmarks(detector):
    detections = detector.detect(media_samples.astronaut())
    assert len(detections.faces) == 1 and not detections.too_small
    face = detections.faces[0]
    assert face.confidence > 0.99
    x1, y1, x2, y2 = face.box
    # The face is in the upper middle of the portrait, landmarks inside its box, eyes on top.
    assert 150 < x1 < x2 < 300 and 30 < y1 < y2 < 200
    for x, y in face.landmarks:
        assert x1 <= x <= x2 and y1 <= y <= y2
    eyes_y = (face.landmarks[0][1] + face.landmarks[1][1]) / 2
    assert eyes_y < face.landmarks[2][1] < face.landmarks[3][1]
    record = face.to_dict()
    assert set(record) == {"box", "landmarks", "confidence"}
    assert list(record["landmarks"]) == list(faces.LANDMARK_NAMES)


def test_composite_several_faces_scales_and_a_rotated_copy(detector):
    picture = media_samples.group_photo(640, 360)
    picture = media_samples.paste(picture, media_samples.head(150, angle=30), 230, 180)
    detections = detector.detect(picture)
    assert len(detections.faces) == 3, detections
    sizes = sorted(face.size for face in detections.faces)
    assert sizes[-1] > 1.5 * sizes[0]  # Found at different scales.
    tilted = [face for face in detections.faces if face.box[0] > 230 and face.box[1] > 180]
    assert len(tilted) == 1
    # PIL rotates counter-clockwise: the eye line then runs up to the right (negative angle).
    # (RetinaFace's own landmarks read -12 degrees here; MTCNN's ONet places them for both.)
    assert _eye_angle(tilted[0]) == pytest.approx(-30, abs=8)
    # Every face aligned the same way: the crops of the upright and rotated copies agree.
    crops = [faces.align(picture, face.landmarks, 64).astype(float) for face in detections.faces]
    upright = faces.align(
        media_samples.astronaut(), detector.detect(media_samples.astronaut()).faces[0].landmarks, 64
    )
    for crop in crops:
        assert np.corrcoef(crop.reshape(-1), upright.astype(float).reshape(-1))[0, 1] > 0.8


def test_no_face_in_a_photo_without_people(detector):
    assert detector.detect(media_samples.coffee()) == faces.Detections()


@pytest.mark.parametrize("name", faces.FACE_DETECTORS)
def test_small_faces_are_reported_and_max_faces_is_applied(name):
    picture = media_samples.group_photo(640, 360)  # Faces about 90 and 50 pixels wide.
    strict = faces.FaceDetector(min_face_size=70, detector=name)
    detections = strict.detect(picture)
    assert len(detections.faces) == 1
    assert detections.faces[0].size >= 70
    # MTCNN always searches down to 20 px faces; RetinaFace searches where a 70-px face is
    # 32 px, and looks again at full size only where that found no usable face.
    assert len(detections.too_small) == (1 if name == "mtcnn" else 0)
    only_small = media_samples.paste(
        media_samples.canvas(640, 360), media_samples.head(110), 400, 60
    )
    alone = strict.detect(only_small)
    assert not alone.faces and len(alone.too_small) == 1 and alone.too_small[0].size < 70
    one = faces.FaceDetector(max_faces=1).detect(picture)
    assert len(one.faces) == 1 and one.over_limit == 1
    assert one.faces[0].size == max(
        face.size for face in faces.FaceDetector().detect(picture).faces
    )
    with pytest.raises(ValueError, match="min_confidence"):
        faces.FaceDetector(min_confidence=1.5)
    with pytest.raises(ValueError, match="uint8 RGB"):
        strict.detect(np.zeros((10, 10), np.uint8))


def _face(x, y, side=50):
    return faces.Face(box=(x, y, x + side, y + side), landmarks=((0, 0),) * 5, confidence=1.0)


def test_tracks_follow_overlapping_boxes_and_close_after_a_gap():
    frames = [
        [_face(0, 0)],
        [_face(10, 0), _face(200, 0)],  # A moves; B appears.
        [_face(200, 5), _face(20, 0)],  # Order in the frame does not matter.
        [_face(30, 0)],  # B leaves.
        [],
        [],
        [],
        [_face(200, 0)],  # Something at B's place after a long gap: a new track.
    ]
    assert faces.track_faces(frames, max_gap=2) == [[0], [0, 1], [1, 0], [0], [], [], [], [2]]
    assert faces.iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)
