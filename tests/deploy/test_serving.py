"""deploy/serving: the TF Serving command and the REST request match what the export holds.

No Docker engine runs here, so the container is not started: the test checks what
TF Serving relies on. The command mounts a folder holding saved_model.pb as a
numeric version folder under /models/$MODEL_NAME (TF Serving loads
<base>/<version>/saved_model.pb), and the export's `serving_default` signature,
read by `saved_model_cli show` (TensorFlow's own SavedModel reader), has one
DT_STRING input `images` and one DT_FLOAT output `p_fake`, which is what makes
the request's row format ({"instances": [{"b64": ...}]}) and the answer
({"predictions": [p_fake, ...]}) valid. shellcheck and --help are checked for
every deploy script by tests/deploy/test_scripts.py.
"""

import base64
import csv
import json
import os
import pathlib
import re
import shlex
import subprocess
import sys

import pytest

from tests.deploy.test_scripts import run_script
from tests.trainer import tiny_detector
from trainer import export

REPO = pathlib.Path(__file__).resolve().parents[2]
SERVE = REPO / "deploy" / "serving" / "serve.sh"
REQUEST = REPO / "deploy" / "serving" / "request.sh"


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    return tiny_detector.export_tiny_detector(str(tmp_path_factory.mktemp("model")))


def docker_command(**env):
    result = run_script(SERVE, "--dry-run", env=env)
    assert result.returncode == 0, result.stderr
    command = shlex.split(result.stdout)
    assert command[:3] == ["docker", "run", "--rm"]
    return command


def mount_fields(mount):
    """A --mount value read the way Docker reads it: one CSV record of key=value fields."""
    return dict(part.partition("=")[::2] for part in next(csv.reader([mount])))


def option_values(command, option):
    return [command[i + 1] for i, arg in enumerate(command) if arg == option]


def test_serve_mounts_the_export_as_a_numeric_version_of_the_named_model(export_dir):
    command = docker_command(EXPORT_DIR=export_dir, MODEL_NAME="dfd", VERSION="7")
    assert command[-1] == "tensorflow/serving"
    assert option_values(command, "-e") == ["MODEL_NAME=dfd"]
    assert option_values(command, "-p") == ["8501:8501", "8500:8500"]
    (mount,) = option_values(command, "--mount")
    fields = mount_fields(mount)
    assert fields["type"] == "bind" and "readonly" in fields
    # The image's entrypoint serves --model_base_path=/models/$MODEL_NAME: the target must be
    # a numeric version folder right under it, and the source the folder with saved_model.pb.
    assert re.fullmatch(r"/models/dfd/\d+", fields["target"]) and fields["target"].endswith("/7")
    source = pathlib.Path(fields["source"])
    assert source == pathlib.Path(export_dir).resolve()
    assert (source / "saved_model.pb").is_file()
    assert (source / "variables" / "variables.index").is_file()
    assert (source / export.METADATA_FILENAME).is_file()  # rides along, ignored by TF Serving


def test_the_export_signature_is_what_the_rest_request_assumes(export_dir):
    shown = subprocess.run(
        [
            str(pathlib.Path(sys.executable).with_name("saved_model_cli")),
            "show",
            "--dir",
            export_dir,
            "--tag_set",
            "serve",
            "--signature_def",
            export.SIGNATURE_NAME,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        timeout=180,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr[-2000:]
    inputs = re.findall(
        r"inputs\['(\w+)'\] tensor_info:\s+dtype: (\w+)\s+shape: (\S+)", shown.stdout
    )
    outputs = re.findall(
        r"outputs\['(\w+)'\] tensor_info:\s+dtype: (\w+)\s+shape: (\S+)", shown.stdout
    )
    # One named input and one named output: TF Serving's row format then takes bare values
    # ({"b64": ...}) as instances and answers {"predictions": [one float per image]}.
    assert inputs == [(export.INPUT_NAME, "DT_STRING", "(-1)")], shown.stdout
    assert outputs == [(export.OUTPUT_NAME, "DT_FLOAT", "(-1)")], shown.stdout
    assert "Method name is: tensorflow/serving/predict" in shown.stdout


def test_request_body_carries_each_jpeg_as_base64_in_order(tmp_path):
    files = []
    for index, brightness in enumerate((40, 200)):
        path = tmp_path / f"face{index}.jpg"
        path.write_bytes(tiny_detector.jpeg_bytes(brightness, seed=index))
        files.append(path)
    result = run_script(
        REQUEST, "--dry-run", *map(str, files), env={"MODEL_NAME": "dfd", "REST_PORT": "9000"}
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "POST http://localhost:9000/v1/models/dfd:predict"
    body = json.loads(result.stdout)
    assert list(body) == ["instances"]
    assert [base64.b64decode(item["b64"]) for item in body["instances"]] == [
        path.read_bytes() for path in files
    ]

    png = tmp_path / "face.png"
    png.write_bytes(tiny_detector.jpeg_bytes(90, image_format="PNG"))
    refused = run_script(REQUEST, "--dry-run", str(png))
    assert refused.returncode == 2 and "is not a JPEG" in refused.stderr


@pytest.mark.parametrize(
    "env,message",
    [
        ({}, "set EXPORT_DIR (a local export) or MODELS_ROOT"),
        ({"EXPORT_DIR": "/nonexistent/export"}, "holds no saved_model.pb"),
        ({"EXPORT_DIR": "gs://b/runs/r1/export"}, "copy it to gs://BUCKET/ROOT/deepfake/1/"),
        ({"EXPORT_DIR": "x", "VERSION": "v1"}, "VERSION=v1 must be a number"),
        ({"MODELS_ROOT": "/nonexistent"}, "holds no deepfake/<number>/saved_model.pb"),
    ],
)
def test_serve_refuses_what_tf_serving_would_not_load(env, message):
    result = run_script(SERVE, "--dry-run", env=env)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_serve_accepts_a_models_root_in_the_versioned_layout(export_dir, tmp_path):
    version = tmp_path / "root" / "deepfake" / "3"
    version.parent.mkdir(parents=True)
    version.symlink_to(export_dir, target_is_directory=True)
    command = docker_command(MODELS_ROOT=str(tmp_path / "root"))
    assert option_values(command, "--mount") == [
        f'type=bind,"source={tmp_path / "root"}",target=/models,readonly'
    ]
    gcs = docker_command(MODELS_ROOT="gs://b/models")
    assert "MODEL_BASE_PATH=gs://b/models" in option_values(gcs, "-e")
    assert "--mount" not in gcs


def test_serve_quotes_a_comma_in_the_export_path_and_checks_ports(export_dir, tmp_path):
    odd = tmp_path / 'run,1 "best"'
    odd.symlink_to(export_dir, target_is_directory=True)
    (mount,) = option_values(docker_command(EXPORT_DIR=str(odd)), "--mount")
    fields = mount_fields(mount)
    assert fields["source"] == str(odd) and fields["target"] == "/models/deepfake/1"
    for env, message in [
        ({"REST_PORT": "80a"}, "REST_PORT=80a is not a TCP port"),
        ({"GRPC_PORT": "70000"}, "GRPC_PORT=70000 is not a TCP port"),
        ({"REST_PORT": "9000", "GRPC_PORT": "9000"}, "both 9000"),
        ({"VERSION": "1" * 19}, "must be a number"),
    ]:
        result = run_script(SERVE, "--dry-run", env={"EXPORT_DIR": export_dir, **env})
        assert result.returncode == 2 and message in result.stderr, result.stderr


def test_request_takes_dash_names_and_refuses_folders_and_stubs(tmp_path):
    dash = tmp_path / "-x.jpg"
    dash.write_bytes(tiny_detector.jpeg_bytes(100))
    stub = tmp_path / "stub.jpg"
    stub.write_bytes(b"\xff\xd8\xff")
    ok = run_script(REQUEST, "--dry-run", "--", "-x.jpg", cwd=str(tmp_path))
    assert ok.returncode == 0, ok.stderr
    assert base64.b64decode(json.loads(ok.stdout)["instances"][0]["b64"]) == dash.read_bytes()
    for argument, message in [
        (str(tmp_path), "is a directory"),
        (str(stub), "3 bytes, too short to be a complete JPEG"),
    ]:
        result = run_script(REQUEST, "--dry-run", argument)
        assert result.returncode == 2 and message in result.stderr, result.stderr
