"""Benchmark: peak memory of `--annotate` on a large photo, full-size drawing against the
bounded copy `trainer.predict` draws on now (issue 20, item 3d).

    .venv/bin/python tests/benchmarks/bench_annotate_memory.py --width=8000 --height=6000

Each way runs in its own fresh process (so each peak is its own), on the same JPEG:

- full: the photo decoded at full size and drawn (what `--annotate` did before);
- imports: the same process, importing the modules only (the baseline: TensorFlow);
- bounded: `media.preview_pixels` (at most `drawing.MAX_DRAWN_SIDE` pixels on the long
  side, JPEGs decoded at reduced scale) drawn with the boxes in the original's
  coordinates (what it does now).

Prints each way's peak resident memory (ru_maxrss of the child) and time, and their ratio.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CHILD = """
import sys
sys.path.insert(0, {repo!r})
import numpy as np
from PIL import Image
from trainer.inference import drawing, media
data = open({path!r}, "rb").read()
record = {{"faces": [], "too_small": [], "p_fake": None, "status": "no_face"}}
if {way!r} == "imports":
    pass
elif {way!r} == "full":
    pixels = np.asarray(Image.open({path!r}).convert("RGB"))
    drawing.annotate_photo(pixels, record, 0.5)
else:
    pixels = media.preview_pixels(data, drawing.MAX_DRAWN_SIDE)
    drawing.annotate_photo(pixels, record, 0.5, size=({width}, {height}))
"""


def _make_photo(path: str, width: int, height: int) -> None:
    import numpy as np  # pylint: disable=import-outside-toplevel
    from PIL import Image  # pylint: disable=import-outside-toplevel

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    with open(path, "wb") as f:
        f.write(buffer.getvalue())


def _run(way: str, path: str, width: int, height: int) -> tuple[float, float]:
    """(peak MiB, seconds) of one way, in a fresh process."""
    code = CHILD.format(repo=REPO, path=path, way=way, width=width, height=height)
    started = time.monotonic()
    wrapper = (
        "import resource, sys; exec(sys.argv[1]); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    completed = subprocess.run(
        [sys.executable, "-c", wrapper, code], capture_output=True, text=True, check=True
    )
    seconds = time.monotonic() - started
    return int(completed.stdout.split()[-1]) / 1024, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=8000)
    parser.add_argument("--height", type=int, default=6000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "photo.jpg")
        _make_photo(path, args.width, args.height)
        megapixels = args.width * args.height / 1e6
        results = {
            way: _run(way, path, args.width, args.height) for way in ("imports", "full", "bounded")
        }
    size = f"{args.width}x{args.height} JPEG ({megapixels:.0f} MP)"
    print(f"| --annotate on a {size} | peak MiB | s |")
    print("|---|---|---|")
    for way, (peak, seconds) in results.items():
        print(f"| {way} | {peak:.0f} | {seconds:.1f} |")
    print(f"peak ratio full/bounded: {results['full'][0] / results['bounded'][0]:.1f}x")


if __name__ == "__main__":
    main()
