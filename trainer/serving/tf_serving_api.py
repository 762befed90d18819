"""TF Serving's REST API for the export: request parsing and the answers, as TF Serving gives them.

So a client written for TF Serving (deploy/serving/request.sh) works unchanged
against `dfd-serve`, and `dfd-serve --model_url` works against TF Serving:

- `GET /v1/models/<name>`: `{"model_version_status": [{"version", "state": "AVAILABLE", ...}]}`;
- `GET /v1/models/<name>/metadata`: the `serving_default` signature;
- `POST /v1/models/<name>:predict`: the row format `{"instances": [{"b64": ...}, ...]}`
  (an instance may also be `{"images": {"b64": ...}}`) answers `{"predictions": [p_fake, ...]}`;
  the columnar format `{"inputs": [...]}` or `{"inputs": {"images": [...]}}` answers
  `{"outputs": [...]}`. Errors are `{"error": "..."}` with a 4xx status.
"""

from __future__ import annotations

import base64
import binascii

from trainer import export

VERSION = "1"


class ApiError(Exception):
    """A request TF Serving would refuse: `status` and the `{"error": message}` body."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def status(ready: bool, message: str = "") -> dict:
    return {
        "model_version_status": [
            {
                "version": VERSION,
                "state": "AVAILABLE" if ready else "LOADING",
                "status": {
                    "error_code": "OK" if ready else "UNAVAILABLE",
                    "error_message": message,
                },
            }
        ]
    }


def metadata(model_name: str) -> dict:
    def tensor(name: str, dtype: str) -> dict:
        return {
            "dtype": dtype,
            "tensor_shape": {"dim": [{"size": "-1", "name": ""}], "unknown_rank": False},
            "name": f"{export.SIGNATURE_NAME}_{name}:0",
        }

    return {
        "model_spec": {"name": model_name, "signature_name": "", "version": VERSION},
        "metadata": {
            "signature_def": {
                "signature_def": {
                    export.SIGNATURE_NAME: {
                        "inputs": {export.INPUT_NAME: tensor(export.INPUT_NAME, "DT_STRING")},
                        "outputs": {export.OUTPUT_NAME: tensor(export.OUTPUT_NAME, "DT_FLOAT")},
                        "method_name": "tensorflow/serving/predict",
                    }
                }
            }
        },
    }


def parse_predict(body: object, max_instances: int) -> tuple[list[bytes], str]:
    """(JPEG bytes per instance, "predictions" or "outputs": the answer's key)."""
    if not isinstance(body, dict):
        raise ApiError(400, "JSON Value: the request body must be a JSON object")
    signature = body.get("signature_name", export.SIGNATURE_NAME)
    if signature != export.SIGNATURE_NAME:
        raise ApiError(400, f'Serving signature name: "{signature}" not found in signature def')
    if ("instances" in body) == ("inputs" in body):
        raise ApiError(400, "Missing 'inputs' or 'instances' key (exactly one of them is expected)")
    if "instances" in body:
        values, key = body["instances"], "predictions"
    else:
        values, key = body["inputs"], "outputs"
    if isinstance(values, dict):
        if set(values) != {export.INPUT_NAME}:
            raise ApiError(400, f"the only input is '{export.INPUT_NAME}'; got {sorted(values)}")
        values = values[export.INPUT_NAME]
    if not isinstance(values, list) or not values:
        raise ApiError(400, 'expected a non-empty list of {"b64": ...} images')
    if len(values) > max_instances:
        raise ApiError(
            400,
            f"{len(values)} instances in one request; at most {max_instances} "
            "(--max_predict_instances): send several requests",
        )
    return [_decode(value, index) for index, value in enumerate(values)], key


def _decode(value: object, index: int) -> bytes:
    if isinstance(value, dict) and set(value) == {export.INPUT_NAME}:
        value = value[export.INPUT_NAME]
    if not (isinstance(value, dict) and set(value) == {"b64"} and isinstance(value["b64"], str)):
        raise ApiError(
            400,
            f'instances[{index}]: a DT_STRING input must be {{"b64": "<base64 JPEG>"}}',
        )
    try:
        return base64.b64decode(value["b64"], validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, f"instances[{index}]: Unable to base64 decode") from None
