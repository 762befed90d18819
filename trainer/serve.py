"""Serves an exported detector over HTTP: `dfd-serve`.

    dfd-serve --export_dir=demo_out/model/export            # http://127.0.0.1:8501/
    dfd-serve --export_dir=gs://bucket/run/export --host=0.0.0.0 --port=8501
    dfd-serve --export_dir=... --model_url=http://tf-serving:8501/v1/models/deepfake

One process gives three things (docs/serving.md is the guide):

- **TF Serving's REST API** for the export (`/v1/models/<name>`, `/metadata`,
  `:predict` with `{"instances": [{"b64": ...}]}`), with dynamic batching;
- **`POST /v1/analyze`**: upload a photo, a face crop or a video (form field
  `file`) and get the record `dfd-predict --output=x.jsonl` writes for it, plus
  links to its annotated photo or timeline (and Grad-CAM with `explain=1` when
  `model.keras` is beside the export);
- **a page for analysts** at `/`, and `/healthz`, `/readyz`, `/metrics`.

It listens on 127.0.0.1 unless told otherwise (`--host=0.0.0.0` in a
container); `--port=0` picks a free port. Start-up prints one line with the URL.
SIGTERM lets the requests in flight finish, then exits.
"""

from __future__ import annotations

from preprocessing import quiet_tensorflow  # noqa: F401  (first: see its docstring)

# isort: split
from collections.abc import Sequence
import signal
import socket
import sys

from absl import app, flags

from preprocessing import cli
from trainer.inference import media
from trainer.serving import app as serving_app
from trainer.serving.config import ServeConfig

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines the command's flags; called by `run_main` only (importing defines none)."""
    _define_model_flags()
    media.define_media_flags()
    flags.adopt_module_key_flags(media)
    _define_batching_flags()
    _define_limit_flags()


def _define_model_flags() -> None:
    flags.DEFINE_string(
        "export_dir",
        None,
        "Exported detector (<model_dir>/export; local or gs://). With --model_url only its "
        "detector.json is read.",
    )
    flags.DEFINE_string("host", "127.0.0.1", "Address to listen on; 0.0.0.0 for every interface.")
    flags.DEFINE_integer("port", 8501, "Port to listen on (TF Serving's REST port); 0: any free.")
    flags.DEFINE_string("model_name", "deepfake", "The model's name in /v1/models/<name>.")
    flags.DEFINE_string(
        "model_url",
        None,
        "Score crops on a remote TF Serving REST endpoint instead of loading the export, "
        "e.g. http://tf-serving:8501/v1/models/deepfake.",
    )
    flags.DEFINE_float(
        "threshold", None, "Override the threshold recorded in the export's detector.json."
    )
    flags.DEFINE_string(
        "keras_model",
        None,
        "Keras model for Grad-CAM (explain=1); default model.keras beside the export.",
    )
    flags.DEFINE_string("explain_layer", None, "Layer Grad-CAM reads (default: as dfd-predict).")


def _define_batching_flags() -> None:
    flags.DEFINE_boolean(
        "enable_batching",
        True,
        "Merge concurrent requests into one model call (TF Serving's name).",
    )
    flags.DEFINE_integer("max_batch_size", 32, "Images per model call at most.")
    flags.DEFINE_integer(
        "batch_timeout_micros",
        0,
        "How long a non-full batch waits for more requests; 0: take what is queued "
        "(fastest on 2 cores, BENCHMARKS.md).",
    )
    flags.DEFINE_integer(
        "max_enqueued_images", 1024, "Images waiting for the model beyond which requests get 503."
    )
    flags.DEFINE_integer("num_batch_threads", 1, "Model calls that may run at once.")


def _define_limit_flags() -> None:
    flags.DEFINE_integer(
        "max_upload_bytes", 100_000_000, "Larger uploads get 413 before they are read whole."
    )
    flags.DEFINE_float(
        "max_video_seconds", 300.0, "Longer videos are scored on their first this many seconds."
    )
    flags.DEFINE_integer("max_concurrent_analyses", 2, "Analyses (face detection) running at once.")
    flags.DEFINE_integer(
        "max_queued_analyses", 8, "Analyses waiting for a slot; beyond that 503 + Retry-After."
    )
    flags.DEFINE_float("request_timeout_seconds", 120.0, "Requests running longer get 504.")
    flags.DEFINE_integer("retry_after_seconds", 2, "The Retry-After of a 503.")
    flags.DEFINE_integer(
        "media_ttl_seconds", 600, "How long annotated pictures and timelines stay downloadable."
    )
    flags.DEFINE_integer("max_predict_instances", 256, "Images per :predict request at most.")


def config_from_flags() -> ServeConfig:
    return ServeConfig(
        export_dir=FLAGS.export_dir,
        model_name=FLAGS.model_name,
        model_url=FLAGS.model_url,
        threshold=FLAGS.threshold,
        options=media.MediaOptions.from_flags(FLAGS),
        enable_batching=FLAGS.enable_batching,
        max_batch_size=FLAGS.max_batch_size,
        batch_timeout_micros=FLAGS.batch_timeout_micros,
        max_enqueued_images=FLAGS.max_enqueued_images,
        num_batch_threads=FLAGS.num_batch_threads,
        max_upload_bytes=FLAGS.max_upload_bytes,
        max_video_seconds=FLAGS.max_video_seconds,
        max_concurrent_analyses=FLAGS.max_concurrent_analyses,
        max_queued_analyses=FLAGS.max_queued_analyses,
        request_timeout_seconds=FLAGS.request_timeout_seconds,
        retry_after_seconds=FLAGS.retry_after_seconds,
        media_ttl_seconds=FLAGS.media_ttl_seconds,
        max_predict_instances=FLAGS.max_predict_instances,
        keras_model=FLAGS.keras_model,
        explain_layer=FLAGS.explain_layer,
    )


def main(argv: Sequence[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not FLAGS.export_dir:
        raise app.UsageError(
            "--export_dir is required: the <model_dir>/export folder written by trainer.task."
        )
    import uvicorn  # Lazy: --help needs neither uvicorn nor TensorFlow.

    config = config_from_flags()
    application = serving_app.create_app(config)
    family = socket.AF_INET6 if ":" in FLAGS.host else socket.AF_INET
    # IPPROTO_TCP named explicitly: asyncio sets TCP_NODELAY only on sockets whose `proto` says
    # TCP, and with proto 0 every keep-alive answer waited ~40 ms for a delayed ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((FLAGS.host, FLAGS.port))
    sock.listen(2048)  # Before the start-up line: a client that reads it is queued, not refused.
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    print(
        f"dfd-serve: serving {config.model_name} from {application.state.service.model.where} "
        f"at http://{shown}:{port}/ (Ctrl-C or SIGTERM stops)",
        flush=True,
    )
    server = uvicorn.Server(
        uvicorn.Config(application, log_level="info", access_log=True, timeout_graceful_shutdown=30)
    )
    # uvicorn re-raises the SIGTERM it handled once its graceful shutdown is done; with
    # this no-op as the handler it then restores, a graceful stop exits with status 0.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    server.run(sockets=[sock])
    return 0


def run_main():
    define_flags()
    cli.run(main, module=sys.modules[__name__], prog="dfd-serve")


if __name__ == "__main__":
    run_main()
