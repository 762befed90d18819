"""The detector behind the service: the export loaded here, or a remote TF Serving.

Both give `score(jpegs) -> [p_fake, ...]` (raising tf.errors.InvalidArgumentError
for a batch the model cannot decode, as the SavedModel does, so
`scoring.score_with_retry` treats them alike), the export's `DetectorMetadata`
(threshold, image size: `detector.json`) and `ready()`.

`RemoteModel` speaks TF Serving's REST API (`POST <model_url>:predict` with
`{"instances": [{"b64": ...}]}`), so `--model_url` can point at TF Serving
(deploy/serving/serve.sh) or at another `dfd-serve`, which answers the same API.
TF Serving does not serve `detector.json`, so the threshold and image size are
still read from `--export_dir` (only that file is needed there; local or gs://).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
import json
import urllib.error
import urllib.request

import tensorflow as tf

from trainer import export
from trainer.inference import scoring


class LocalModel:
    """The exported SavedModel, loaded in this process."""

    def __init__(self, export_dir: str, threshold: float | None = None):
        self._detector = scoring.Detector(export_dir, threshold=threshold)
        self.export_dir = export_dir
        self.metadata = self._detector.metadata
        self.threshold = self._detector.threshold
        self.where = export_dir

    def score(self, jpegs: Sequence[bytes]) -> list[float]:
        return self._detector.score(jpegs).tolist()

    def ready(self) -> tuple[bool, str]:
        return True, f"model loaded from {self.export_dir}"


class RemoteModel:
    """A TF Serving REST endpoint, e.g. http://tf-serving:8501/v1/models/deepfake."""

    def __init__(
        self,
        model_url: str,
        export_dir: str,
        threshold: float | None = None,
        timeout_seconds: float = 30.0,
    ):
        if not model_url.startswith(("http://", "https://")):
            raise ValueError(
                f"--model_url={model_url!r} must be an http(s) URL such as "
                "http://host:8501/v1/models/deepfake."
            )
        self.model_url = model_url.rstrip("/")
        self.export_dir = export_dir
        self.metadata = export.read_metadata(export_dir)
        self.threshold = self.metadata.threshold if threshold is None else float(threshold)
        self.timeout = timeout_seconds
        self.where = self.model_url

    def score(self, jpegs: Sequence[bytes]) -> list[float]:
        body = json.dumps(
            {"instances": [{"b64": base64.b64encode(jpeg).decode("ascii")} for jpeg in jpegs]}
        ).encode()
        request = urllib.request.Request(
            f"{self.model_url}:predict",
            data=body,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                answer = json.load(response)
        except urllib.error.HTTPError as error:
            message = _error_message(error)
            if error.code == 400:  # TF Serving: the input was rejected (e.g. not a JPEG).
                raise tf.errors.InvalidArgumentError(None, None, message) from None
            raise RemoteModelError(f"{self.model_url} answered {error.code}: {message}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as error:
            raise RemoteModelError(f"{self.model_url} unreachable: {error}") from None
        predictions = answer.get("predictions")
        if not isinstance(predictions, list) or len(predictions) != len(jpegs):
            raise RemoteModelError(
                f"{self.model_url} answered without one prediction per image: {str(answer)[:200]}"
            )
        return [float(_scalar(p)) for p in predictions]

    def ready(self) -> tuple[bool, str]:
        try:
            with urllib.request.urlopen(self.model_url, timeout=5) as response:
                status = json.load(response)
        except (urllib.error.URLError, OSError, ValueError) as error:
            return False, f"{self.model_url} not reachable: {error}"
        states = [v.get("state") for v in status.get("model_version_status", [])]
        return "AVAILABLE" in states, f"{self.model_url}: {states}"


class RemoteModelError(RuntimeError):
    """The remote model server failed (not the input): answered 502 to the client."""


def _scalar(prediction):
    """TF Serving gives a bare number for a single output, {"p_fake": x} for named outputs."""
    if isinstance(prediction, dict):
        return prediction[export.OUTPUT_NAME]
    if isinstance(prediction, list):
        return prediction[0]
    return prediction


def _error_message(error: urllib.error.HTTPError) -> str:
    try:
        return str(json.load(error).get("error", ""))[:300]
    except (ValueError, AttributeError, OSError):
        return error.reason or ""
