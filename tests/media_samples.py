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


def write_mjpeg(path: str, frames, stamps_ms) -> str:
    """An MJPEG video whose frame k is shown at `stamps_ms[k]` milliseconds.

    Irregular stamps make a variable-frame-rate clip; a frame of another size
    than the first is encoded on its own (MJPEG frames are separate JPEGs), so
    the stream's header states the first frame's size only. `.mkv` or `.avi`.
    """
    import fractions

    import av

    millisecond = fractions.Fraction(1, 1000)
    with av.open(path, "w") as container:
        stream = container.add_stream("mjpeg", rate=10)
        height, width = frames[0].shape[:2]
        stream.width, stream.height, stream.pix_fmt = width, height, "yuvj420p"
        stream.time_base = stream.codec_context.time_base = millisecond
        for pixels, stamp in zip(frames, stamps_ms):
            encoder = stream.codec_context
            if pixels.shape[:2] != (height, width):
                encoder = av.CodecContext.create("mjpeg", "w")
                encoder.height, encoder.width = pixels.shape[:2]
                encoder.pix_fmt, encoder.time_base = "yuvj420p", millisecond
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts, frame.time_base = stamp, millisecond
            for packet in encoder.encode(frame):
                packet.stream = stream
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
