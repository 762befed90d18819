"""Issue 20 (3a, 3c): the frame plan at high --frames_per_second, and a frame that grows.

Runs each case in a fresh process, with this tree's `preprocessing.media.video` and
with main's (`git show main:preprocessing/media/video.py`), and prints the median
wall time and the peak resident memory (VmHWM) of each:

    .venv/bin/python tests/benchmarks/bench_video_limits.py [--repeats=3]

Cases: `plan`: `plan_times` for a 20-minute video at 1e3 and 1e4 frames per second
(main builds the whole grid: 1.2 and 12 million time stamps); `grow`: reading an
MJPEG .avi whose first frames are 64x64 and third 6000x6000, with
--max_frame_pixels=100000 (main decodes and converts it; here it is refused first).
Not a timed test: run it by hand and quote what it prints.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CHILD = r"""
import importlib.util, json, sys, time
sys.path.insert(0, sys.argv[1])
spec = importlib.util.spec_from_file_location("video_under_test", sys.argv[2])
video = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = video
spec.loader.exec_module(video)
case, arg = sys.argv[3], sys.argv[4]
start = time.perf_counter()
if case == "plan":
    info = video.VideoInfo(1200.0, 30.0, 640, 360, 0, "h264", "mp4")
    outcome = len(video.plan_times(info, frames_per_second=float(arg)))
else:
    try:
        frames = video.read_frames(arg, [0.0, 0.1, 0.2, 0.3], max_pixels=100000)
        outcome = [f.image.shape for f in frames]
    except video.VideoError as error:
        outcome = error.reason
elapsed = time.perf_counter() - start
# VmHWM, not ru_maxrss: Linux copies ru_maxrss from the parent at fork.
peak_kb = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(json.dumps({"seconds": elapsed, "peak_mb": peak_kb / 1024, "outcome": str(outcome)}))
"""


def _run(module_path, case, arg):
    done = subprocess.run(
        [sys.executable, "-c", CHILD, REPO, module_path, case, arg],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, REPO)
    import numpy as np

    from tests import media_samples

    with tempfile.TemporaryDirectory() as tmp:
        main_module = os.path.join(tmp, "video_main.py")
        with open(main_module, "w") as f:
            f.write(
                subprocess.run(
                    ["git", "show", "main:preprocessing/media/video.py"],
                    cwd=REPO,
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
            )
        frames = [np.full((64, 64, 3), 40, np.uint8)] * 4
        frames[2] = np.zeros((6000, 6000, 3), np.uint8)
        clip = media_samples.write_mjpeg(os.path.join(tmp, "grows.avi"), frames, [0, 100, 200, 300])
        this = os.path.join(REPO, "preprocessing", "media", "video.py")
        cases = [("plan", "1000"), ("plan", "10000"), ("grow", clip)]
        for case, arg in cases:
            for name, module in (("main", main_module), ("this", this)):
                runs = [_run(module, case, arg) for _ in range(args.repeats)]
                print(
                    f"{case} {os.path.basename(arg)}: {name}: median "
                    f"{statistics.median(r['seconds'] for r in runs):.3f} s, peak "
                    f"{statistics.median(r['peak_mb'] for r in runs):.0f} MB, "
                    f"outcome {runs[0]['outcome'][:60]}"
                )


if __name__ == "__main__":
    main()
