"""Test photographs and videos, made at test time from scikit-image's bundled photographs.

The builders live in `preprocessing.demo_media` (the demo uses them too): the astronaut
portrait and the face-free coffee photograph ship inside the scikit-image wheel,
so nothing is downloaded and no image is copied into this repository.
"""

from preprocessing.demo_media import (  # noqa: F401  Re-exported for the tests.
    HEAD,
    astronaut,
    canvas,
    coffee,
    encode,
    group_photo,
    head,
    moving_faces_frames,
    paste,
    write_video,
)
