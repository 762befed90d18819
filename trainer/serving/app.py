"""The `dfd-serve` application: TF Serving's REST API, `/v1/analyze`, the analysts' page.

Routes (docs/serving.md is the user's guide):

    GET  /                              the page for analysts (static/, no CDN)
    GET  /healthz, /readyz              liveness; readiness (the model loaded or reachable)
    GET  /metrics                       Prometheus text format
    GET  /v1/detector                   detector.json and where the model is (the page's model card)
    GET  /v1/models/<name>[/metadata]   TF Serving's status and signature
    POST /v1/models/<name>:predict      TF Serving's predict, dynamically batched
    POST /v1/analyze                    multipart `file`: the record dfd-predict writes, plus links
    GET  /v1/media/<token>/<name>       the pictures an analysis drew, for --media_ttl_seconds

Every answer is JSON (`{"error": "..."}` on failure) except the page, the
pictures and the metrics; no traceback ever reaches a client (it is logged).
Analyses run in a pool of `max_concurrent_analyses` threads; at most
`max_queued_analyses` more wait, and beyond that a request gets 503 with
Retry-After before its body is read.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import importlib.resources
import json
import threading
import time

from absl import logging
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from trainer.inference import predict_lib, scoring
from trainer.serving import analysis, batching, models, telemetry, tf_serving_api, uploads
from trainer.serving.config import ServeConfig
from trainer.serving.media_store import MediaStore

STATIC = importlib.resources.files("trainer.serving") / "static"
TRUE = ("1", "true", "yes", "on")


class Refused(Exception):
    """An answer other than 200, decided on purpose: status, reason code, message."""

    def __init__(self, status: int, reason: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.reason, self.headers = status, reason, headers or {}


def load_model(config: ServeConfig):
    """The local export, or the remote TF Serving named by `--model_url`."""
    if config.model_url:
        return models.RemoteModel(
            config.model_url,
            config.export_dir,
            config.threshold,
            timeout_seconds=config.request_timeout_seconds,
        )
    return models.LocalModel(config.export_dir, config.threshold)


class Service:
    """The state behind the routes: the model, the batcher, the analyses, the metrics."""

    def __init__(self, config: ServeConfig, model):
        self.config = config
        self.model = model
        self.telemetry = telemetry.Telemetry()
        batch_options = {
            "max_batch_size": config.max_batch_size,
            "max_enqueued_images": config.max_enqueued_images,
            "on_batch": self.telemetry.batch_size.observe,
        }
        if config.enable_batching:
            self.scorer = batching.DynamicBatcher(
                model.score,
                batch_timeout_micros=config.batch_timeout_micros,
                num_batch_threads=config.num_batch_threads,
                **batch_options,
            )
        else:
            self.scorer = batching.DirectScorer(model.score, **batch_options)
        self.store = MediaStore(config.media_ttl_seconds)
        self.executor = concurrent.futures.ThreadPoolExecutor(
            config.max_concurrent_analyses, thread_name_prefix="analysis"
        )
        self.analyzer = analysis.Analyzer(
            threshold=model.threshold,
            image_size=model.metadata.image_size,
            options=config.options,
            score=self._score_from_thread,
            max_video_seconds=config.max_video_seconds,
            keras_model=_keras_model(config),
            explain_layer=config.explain_layer,
        )
        self.admitted = 0
        self.loop: asyncio.AbstractEventLoop | None = None

    @contextlib.asynccontextmanager
    async def lifespan(self, app):
        self.loop = asyncio.get_running_loop()
        self.scorer.start()
        sweeper = asyncio.create_task(self._sweep())
        try:
            yield
        finally:  # uvicorn lets in-flight requests finish before this runs (SIGTERM).
            sweeper.cancel()
            await self.scorer.stop()
            self.executor.shutdown(wait=True, cancel_futures=True)
            self.store.close()

    async def _sweep(self):
        while True:
            await asyncio.sleep(min(60.0, self.config.media_ttl_seconds / 2))
            self.store.sweep()

    def _score_from_thread(self, jpegs):
        """The analysis threads score through the event loop's batcher (shared batches)."""
        if not jpegs:
            return []
        return asyncio.run_coroutine_threadsafe(self.scorer.submit(jpegs), self.loop).result()

    def busy(self, what: str) -> Refused:
        return Refused(
            503,
            "busy",
            f"the server is busy ({what}); try again in {self.config.retry_after_seconds} s",
            {"Retry-After": str(self.config.retry_after_seconds)},
        )


def _keras_model(config: ServeConfig) -> str | None:
    """model.keras for Grad-CAM on request: --keras_model, or beside a local export."""
    if config.model_url and not config.keras_model:
        return None
    import tensorflow as tf

    from trainer.inference import explain

    path = config.keras_model or explain.default_keras_model_path(config.export_dir)
    return path if tf.io.gfile.exists(path) else None


def _endpoint(name: str):
    """Times and counts the route, and turns every failure into a JSON error (never a traceback)."""

    def wrap(handler):
        @functools.wraps(handler)
        async def route(request: Request) -> Response:
            service: Service = request.app.state.service
            start = time.perf_counter()
            try:
                response = await handler(service, request)
            except Refused as refused:
                service.telemetry.rejects.labels(refused.reason).inc()
                response = JSONResponse(
                    {"error": str(refused), "reason": refused.reason},
                    refused.status,
                    headers=refused.headers,
                )
            except tf_serving_api.ApiError as error:
                service.telemetry.rejects.labels("bad_request").inc()
                response = JSONResponse({"error": str(error)}, error.status)
            except Exception:  # noqa: BLE001  Logged here; the client gets one line.
                logging.exception("Internal error answering %s %s", request.method, name)
                service.telemetry.rejects.labels("internal").inc()
                response = JSONResponse(
                    {"error": "internal error; the server logged the details"}, 500
                )
            service.telemetry.observe(name, response.status_code, time.perf_counter() - start)
            return response

        return route

    return wrap


# ---------------------------------------------------------------------------- operations


async def page(request: Request) -> Response:
    return Response((STATIC / "index.html").read_bytes(), media_type="text/html; charset=utf-8")


@_endpoint("healthz")
async def healthz(service: Service, request: Request) -> Response:
    return JSONResponse({"status": "alive"})


@_endpoint("readyz")
async def readyz(service: Service, request: Request) -> Response:
    ready, message = await asyncio.to_thread(service.model.ready)
    return JSONResponse({"ready": ready, "model": message}, 200 if ready else 503)


async def metrics(request: Request) -> Response:
    service: Service = request.app.state.service
    return Response(service.telemetry.text(), media_type=telemetry.CONTENT_TYPE_LATEST)


@_endpoint("detector")
async def detector(service: Service, request: Request) -> Response:
    metadata = service.model.metadata
    return JSONResponse(
        {
            "model_name": service.config.model_name,
            "model": _short(service.model.where),
            "detector": json.loads(metadata.to_json()),
            "threshold": service.model.threshold,
            "threshold_source": metadata.threshold_source
            if service.config.threshold is None
            else "--threshold of dfd-serve",
            "explain_available": service.analyzer.keras_model is not None,
            "limits": {
                "max_upload_bytes": service.config.max_upload_bytes,
                "max_video_seconds": service.config.max_video_seconds,
                "max_frame_pixels": service.config.options.max_frame_pixels,
                "request_timeout_seconds": service.config.request_timeout_seconds,
            },
        }
    )


# ---------------------------------------------------------------------------- TF Serving API


def _short(where: str) -> str:
    """A URL as is; an export path by its last two parts (the page shows no server layout)."""
    if "://" in where and not where.startswith("gs://"):
        return where
    return "/".join(where.rstrip("/").split("/")[-2:])


def _model_name(service: Service, name: str) -> None:
    if name != service.config.model_name:
        raise tf_serving_api.ApiError(404, f"Servable not found for request: Latest({name})")


@_endpoint("model_status")
async def model_status(service: Service, request: Request) -> Response:
    target = request.path_params["target"]
    name, _, verb = target.partition(":")
    _model_name(service, name)
    if verb or request.method != "GET":
        raise tf_serving_api.ApiError(
            404, f"Malformed request: {request.method} {request.url.path}"
        )
    ready, message = await asyncio.to_thread(service.model.ready)
    return JSONResponse(tf_serving_api.status(ready, "" if ready else message))


@_endpoint("metadata")
async def model_metadata(service: Service, request: Request) -> Response:
    _model_name(service, request.path_params["name"])
    return JSONResponse(tf_serving_api.metadata(service.config.model_name))


@_endpoint("predict")
async def predict(service: Service, request: Request) -> Response:
    name, _, verb = request.path_params["target"].partition(":")
    _model_name(service, name)
    if verb != "predict":
        raise tf_serving_api.ApiError(404, f"Malformed request: POST {request.url.path}")
    body = await _read_json(request, service.config.max_upload_bytes)
    jpegs, key = tf_serving_api.parse_predict(body, service.config.max_predict_instances)
    try:
        async with asyncio.timeout(service.config.request_timeout_seconds):
            scores = await service.scorer.submit(jpegs)
    except batching.QueueFullError as error:
        raise service.busy(str(error)) from None
    except TimeoutError:
        raise Refused(504, "timeout", _timeout_message(service)) from None
    except models.RemoteModelError as error:
        raise Refused(502, "remote_model", str(error)) from None
    bad = [index for index, p in enumerate(scores) if p is None]
    if bad:
        raise tf_serving_api.ApiError(
            400, f"instances{bad}: {scoring.UNDECODABLE} (not a valid JPEG)"
        )
    return JSONResponse({key: scores})


async def _read_json(request: Request, max_bytes: int):
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > max_bytes:
        raise Refused(413, "too_large", f"request body over {max_bytes} bytes (--max_upload_bytes)")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise Refused(
                413, "too_large", f"request body over {max_bytes} bytes (--max_upload_bytes)"
            )
    try:
        return json.loads(body)
    except ValueError as error:
        raise tf_serving_api.ApiError(400, f"JSON Parse error: {error}") from None


def _timeout_message(service: Service) -> str:
    return (
        f"the request took longer than {service.config.request_timeout_seconds:g} s "
        "(--request_timeout_seconds) and was stopped"
    )


# ---------------------------------------------------------------------------- analyze


@_endpoint("analyze")
async def analyze(service: Service, request: Request) -> Response:
    limit = service.config.max_concurrent_analyses + service.config.max_queued_analyses
    if service.admitted >= limit:
        raise service.busy(
            f"{service.admitted} analyses running or waiting (--max_concurrent_analyses="
            f"{service.config.max_concurrent_analyses}, --max_queued_analyses="
            f"{service.config.max_queued_analyses})"
        )
    service.admitted += 1
    service.telemetry.analyses_in_progress.inc()
    token, folder = service.store.new_folder()
    abandoned = threading.Event()
    running: list[asyncio.Future] = []  # The analysis thread's future, once it is submitted.

    def release(failed: bool) -> None:
        service.admitted -= 1
        service.telemetry.analyses_in_progress.dec()
        if failed:
            service.store.discard(token)

    try:
        async with asyncio.timeout(service.config.request_timeout_seconds):
            outcome = await _analyze_upload(service, request, folder, abandoned, running)
    except BaseException as error:
        abandoned.set()
        if running and not running[0].done():
            # The slot stays taken until the abandoned thread stops (at its next video
            # chunk): new work then gets 503, instead of queueing behind it and timing out.
            running[0].add_done_callback(
                lambda future: (future.cancelled() or future.exception(), release(True))
            )
        else:
            release(True)
        if isinstance(error, TimeoutError):
            raise Refused(504, "timeout", _timeout_message(service)) from None
        raise
    release(False)
    return _analysis_response(service, token, outcome)


async def _analyze_upload(
    service: Service, request: Request, folder: str, abandoned, running: list
):
    try:
        upload = await uploads.receive_upload(
            request.headers, request.stream(), folder, service.config.max_upload_bytes
        )
        kind = uploads.check_type(upload.path, upload.declared_type)
    except uploads.UploadError as error:
        raise Refused(error.status, error.reason, str(error)) from None
    explain = (upload.fields.get("explain") or request.query_params.get("explain", "")).lower()
    work = functools.partial(
        service.analyzer.analyze,
        upload.path,
        kind,
        upload.display_name,
        folder,
        explain=explain in TRUE,
        abandoned=abandoned,
    )
    running.append(asyncio.get_running_loop().run_in_executor(service.executor, work))
    try:
        return await asyncio.shield(running[0])
    except batching.QueueFullError as error:
        raise service.busy(str(error)) from None
    except models.RemoteModelError as error:
        raise Refused(502, "remote_model", str(error)) from None
    except analysis.Abandoned:
        raise TimeoutError() from None


def _analysis_response(service: Service, token: str, outcome: analysis.Outcome) -> Response:
    record = outcome.record
    judged = record.get("status") in predict_lib.JUDGED or record.get("p_fake") is not None
    if not judged:
        service.store.discard(token)
        service.telemetry.rejects.labels(record.get("status", "unreadable")).inc()
        return JSONResponse(record, 400)
    service.store.keep(token, outcome.files)
    links = {name: f"/v1/media/{token}/{name}" for name in sorted(outcome.files)}
    answer = {
        **record,
        "threshold": service.model.threshold,
        "links": links,
        "links_expire_seconds": service.config.media_ttl_seconds,
    }
    return JSONResponse(answer)


@_endpoint("media")
async def media_file(service: Service, request: Request) -> Response:
    path = service.store.lookup(request.path_params["token"], request.path_params["name"])
    if path is None:
        raise Refused(404, "not_found", "no such picture (pictures expire; analyse the file again)")
    return FileResponse(path, media_type="image/png")


def create_app(config: ServeConfig, model=None) -> Starlette:
    """The ASGI app; `model` defaults to `load_model(config)`."""
    service = Service(config, model or load_model(config))
    app = Starlette(
        routes=[
            Route("/", page),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
            Route("/v1/detector", detector),
            Route("/v1/analyze", analyze, methods=["POST"]),
            Route("/v1/media/{token}/{name}", media_file),
            Route("/v1/models/{name}/metadata", model_metadata),
            Route("/v1/models/{target}", model_status, methods=["GET"]),
            Route("/v1/models/{target}", predict, methods=["POST"]),
            Mount("/static", StaticFiles(directory=str(STATIC)), name="static"),
        ],
        lifespan=service.lifespan,
    )
    app.state.service = service
    return app
