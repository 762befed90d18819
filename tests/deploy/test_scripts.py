"""The launch scripts, job specs, flagfiles and Dockerfiles in deploy/.

No cloud is reachable here, so every script is checked for what can be checked on
this machine: `bash -n`, shellcheck, `--help`, clear errors for missing variables,
and (with --dry-run) that the command it would run is what the tools it launches
accept: the dataset build's flags, Beam's pipeline options, the trainer's flags.
"""

import glob
import json
import os
import re
import shlex
import subprocess
import sys

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPTS = sorted(glob.glob(os.path.join(REPO, "deploy", "**", "*.sh"), recursive=True))
CONFIGS = sorted(glob.glob(os.path.join(REPO, "deploy", "configs", "*.cfg")))
SHELLCHECK = os.path.join(os.path.dirname(sys.executable), "shellcheck")
# Variables the user must set, per script (startup.sh reads instance metadata instead).
REQUIRED = {
    "deploy/dataflow/launch_build.sh": [
        "PROJECT",
        "REGION",
        "MANUAL_DIR",
        "DATA_DIR",
        "TEMP_LOCATION",
    ],
    "deploy/gce/create_gpu_vm.sh": [
        "PROJECT",
        "ZONE",
        "VM_NAME",
        "IMAGE_URI",
        "FLAGFILE_URI",
        "DATA_DIR",
        "MODEL_DIR",
    ],
    "deploy/vertex/submit.sh": ["PROJECT", "REGION", "IMAGE_URI", "DATA_DIR", "MODEL_DIR"],
    "deploy/docker/build_and_push.sh": ["IMAGE_PREFIX"],
}


def relative(path):
    return os.path.relpath(path, REPO)


def run_script(script, *args, env=None, cwd=REPO):
    """Runs a deploy/ script with only PATH and HOME from this environment, plus `env`."""
    clean = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run(
        ["bash", os.path.join(REPO, script), *args],
        cwd=cwd,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_every_script_is_covered():
    assert {relative(s) for s in SCRIPTS} >= set(REQUIRED) | {"deploy/gce/startup.sh"}


@pytest.mark.parametrize(
    "script", SCRIPTS + [os.path.join(REPO, "deploy", "common.bash")], ids=relative
)
def test_script_is_valid_bash_and_passes_shellcheck(script):
    syntax = subprocess.run(["bash", "-n", script], capture_output=True, text=True, check=False)
    assert syntax.returncode == 0, syntax.stderr
    # -x follows `source deploy/common.bash` (paths in the directives are from the repo root).
    lint = subprocess.run(
        [SHELLCHECK, "-x", "--shell=bash", "--severity=style", script],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=relative)
def test_script_header_strict_mode_and_help(script):
    with open(script, encoding="utf-8") as f:
        text = f.read()
    lines = text.splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert lines[1].startswith("# ") and "Runtime" in text  # says what it runs and how long
    assert "set -euo pipefail" in lines
    assert os.access(script, os.X_OK)
    assert not re.search(
        r"(?i)(api[_-]?key|secret|password|private_key|BEGIN [A-Z ]*KEY)\s*[=:]", text
    ), "no credentials in scripts: ADC or service accounts"
    result = run_script(relative(script), "--help")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) >= 3


@pytest.mark.parametrize("script", sorted(REQUIRED))
def test_missing_variables_are_named(script):
    result = run_script(script)
    assert result.returncode == 2
    for name in REQUIRED[script]:
        assert name in result.stderr
    assert "--help" in result.stderr


def test_non_gcs_paths_are_refused_with_the_reason():
    env = dict(
        PROJECT="p",
        REGION="r",
        MANUAL_DIR="/home/me/raw",
        DATA_DIR="gs://b/tfds",
        TEMP_LOCATION="gs://b/tmp",
    )
    result = run_script("deploy/dataflow/launch_build.sh", "--dry-run", env=env)
    assert result.returncode == 2 and "MANUAL_DIR=/home/me/raw must be a gs:// URL" in result.stderr


# --------------------------------------------------------------------------- flag parsers

# Runs in a subprocess: absl's FLAGS is process-wide, and importing trainer.task or
# defining tfds_builder.build's flags here would leak into other tests' FLAGS.
_PARSE_TRAINER = r"""
import json, sys
from absl import flags
import trainer.task
trainer.task.define_flags()
FLAGS = flags.FLAGS
results = []
for argv in json.loads(sys.argv[1]):
    try:
        FLAGS.unparse_flags()
        FLAGS(["dfd-train", *argv])
        results.append({"argv": argv, "ok": True, "strategy": FLAGS.strategy})
    except Exception as error:  # reported to the test, which names the flagfile
        results.append({"argv": argv, "ok": False, "error": f"{type(error).__name__}: {error}"})
print(json.dumps(results))
"""

_PARSE_BUILD = r"""
import json, sys
from absl import flags
import tfds_builder.build as build
build.define_flags()
rest = flags.FLAGS(["dfd-build-dataset", *json.loads(sys.argv[1])])
print(json.dumps({"manual_dir": flags.FLAGS.manual_dir, "data_dir": flags.FLAGS.data_dir,
                  "runner": flags.FLAGS.runner, "passed_through": rest[1:]}))
"""


def parse_in_subprocess(program, argvs):
    result = subprocess.run(
        [sys.executable, "-c", program, json.dumps(argvs)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def vertex_spec(spec, **env):
    base = dict(
        SPEC=spec,
        PROJECT="p",
        REGION="europe-west4",
        IMAGE_URI="europe-west4-docker.pkg.dev/p/dfd/dfd-train:v1",
        DATA_DIR="gs://b/tfds",
        MODEL_DIR="gs://b/runs/r1",
    )
    result = run_script("deploy/vertex/submit.sh", "--dry-run", env={**base, **env})
    assert result.returncode == 0, result.stderr
    assert "${" not in result.stdout
    assert "gcloud ai custom-jobs create --project=p --region=europe-west4" in result.stderr
    return yaml.safe_load(result.stdout)


def image_path_to_repo(path):
    """Maps the image's /app/... (Dockerfile.gpu copies the repo there) to this checkout."""
    assert path.startswith("/app/"), path
    return os.path.join(REPO, path[len("/app/") :])


@pytest.fixture(scope="module")
def trainer_parses(tmp_path_factory):
    """Every flagfile, and every Vertex spec's arguments, through the trainer's parser.

    The last entry is a control: a flagfile with a flag the trainer does not define.
    """
    if not os.path.exists(os.path.join(REPO, "trainer", "task.py")):
        pytest.skip("trainer/task.py has not landed yet")
    argvs = [
        [f"--flagfile={cfg}", "--data_dir=gs://b/tfds", "--model_dir=gs://b/runs/r1"]
        for cfg in CONFIGS
    ]
    for spec in ("single", "multi"):
        args = vertex_spec(spec)["workerPoolSpecs"][0]["containerSpec"]["args"]
        argvs.append(
            [
                f"--flagfile={image_path_to_repo(a.split('=', 1)[1])}"
                if a.startswith("--flagfile=")
                else a
                for a in args
            ]
        )
    bogus = tmp_path_factory.mktemp("cfg") / "bogus.cfg"
    bogus.write_text("--epochs=1\n--no_such_flag=3\n")
    argvs.append([f"--flagfile={bogus}", "--data_dir=d", "--model_dir=m"])
    return parse_in_subprocess(_PARSE_TRAINER, argvs)


def test_the_four_flagfiles_exist():
    names = {os.path.basename(c) for c in CONFIGS}
    assert names >= {
        "demo_cpu.cfg",
        "140k_resnet50_1gpu.cfg",
        "140k_resnet50_8gpu.cfg",
        "multiworker.cfg",
    }


def test_every_flagfile_loads_into_the_trainer_with_no_unknown_flags(trainer_parses):
    *parses, control = trainer_parses
    assert len(parses) == len(CONFIGS) + 2
    failures = {" ".join(r["argv"]): r["error"] for r in parses if not r["ok"]}
    assert not failures
    assert not control["ok"] and "no_such_flag" in control["error"]  # the check can fail


def test_vertex_specs_parse_and_match_their_strategies(trainer_parses):
    for path in glob.glob(os.path.join(REPO, "deploy", "vertex", "*.yaml")):
        with open(path, encoding="utf-8") as f:
            assert yaml.safe_load(f)["workerPoolSpecs"]  # the templates themselves parse

    single = vertex_spec("single")["workerPoolSpecs"]
    assert len(single) == 1 and single[0]["replicaCount"] == 1
    assert single[0]["machineSpec"]["acceleratorCount"] == 8
    multi_job = vertex_spec(
        "multi",
        NUM_WORKERS="4",
        ACCELERATOR_COUNT="2",
        MACHINE_TYPE="n1-standard-16",
        ACCELERATOR_TYPE="NVIDIA_TESLA_V100",
    )
    assert multi_job["scheduling"] == {"restartJobOnWorkerRestart": True}
    multi = multi_job["workerPoolSpecs"]
    assert [pool["replicaCount"] for pool in multi] == [1, 3]  # chief + 3 workers
    assert multi[0]["containerSpec"] == multi[1]["containerSpec"]
    assert multi[1]["machineSpec"] == {
        "machineType": "n1-standard-16",
        "acceleratorType": "NVIDIA_TESLA_V100",
        "acceleratorCount": 2,
    }
    strategies = {r["argv"][0].split("=", 1)[1]: r.get("strategy") for r in trainer_parses}
    for spec, expected in (("single", "mirrored"), ("multi", "multi_worker_mirrored")):
        args = vertex_spec(spec)["workerPoolSpecs"][0]["containerSpec"]["args"]
        flagfile = image_path_to_repo(args[0].split("=", 1)[1])
        assert strategies[flagfile] == expected

    gcs_flagfile = vertex_spec("single", FLAGFILE="gs://b/cfg/run.cfg")
    assert gcs_flagfile["workerPoolSpecs"][0]["containerSpec"]["args"][0] == (
        "--flagfile=/gcs/b/cfg/run.cfg"
    )  # read through Vertex's Cloud Storage mount


def test_dataflow_launch_command_is_accepted_by_the_build_and_by_beam(tmp_path):
    env = dict(
        PROJECT="my-project",
        REGION="europe-west4",
        MANUAL_DIR="gs://b/raw",
        DATA_DIR="gs://b/tfds",
        TEMP_LOCATION="gs://b/tmp",
        MAX_NUM_WORKERS="25",
        WORKER_MACHINE_TYPE="n1-highmem-4",
        PYTHON=sys.executable,
    )
    result = run_script("deploy/dataflow/launch_build.sh", "--dry-run", "--overwrite", env=env)
    assert result.returncode == 0, result.stderr
    command = shlex.split(result.stdout)
    assert command[:3] == [sys.executable, "-m", "tfds_builder.build"]

    parsed = parse_in_subprocess(_PARSE_BUILD, command[3:])
    assert parsed["manual_dir"] == "gs://b/raw" and parsed["data_dir"] == "gs://b/tfds"
    assert parsed["runner"] == "DataflowRunner"

    from apache_beam.options import pipeline_options as po  # pylint: disable=import-outside-toplevel

    options = po.PipelineOptions(parsed["passed_through"])
    cloud = options.view_as(po.GoogleCloudOptions)
    assert (cloud.project, cloud.region) == ("my-project", "europe-west4")
    assert (cloud.temp_location, cloud.staging_location) == ("gs://b/tmp", "gs://b/tmp/staging")
    workers = options.view_as(po.WorkerOptions)
    assert (workers.machine_type, workers.max_num_workers) == ("n1-highmem-4", 25)
    setup = options.view_as(po.SetupOptions)
    assert setup.setup_file == "./setup.py"  # relative to the repo root, where it runs
    assert os.path.isfile(os.path.join(REPO, setup.requirements_file))
    assert setup.requirements_cache == "skip"
    # Nothing was left that Beam does not know.
    known = set(options.get_all_options(retain_unknown_options=False))
    given = {arg[2:].split("=", 1)[0] for arg in parsed["passed_through"]}
    assert given <= known | {"worker_machine_type"}, given - known

    custom = run_script(
        "deploy/dataflow/launch_build.sh",
        "--dry-run",
        env={**env, "SDK_CONTAINER_IMAGE": "europe-west4-docker.pkg.dev/p/d/w:1"},
    )
    assert "--sdk_container_image=europe-west4-docker.pkg.dev/p/d/w:1" in custom.stdout
    assert "--requirements_file" not in custom.stdout


def test_gce_vm_command_passes_what_the_startup_script_reads():
    env = dict(
        PROJECT="p",
        ZONE="europe-west4-a",
        VM_NAME="dfd-1",
        IMAGE_URI="europe-west4-docker.pkg.dev/p/dfd/dfd-train:v1",
        FLAGFILE_URI="gs://b/cfg/run.cfg",
        DATA_DIR="gs://b/tfds",
        MODEL_DIR="gs://b/runs/r1",
        GPU_COUNT="8",
        SPOT="1",
        EXTRA_ARGS="--epochs=3,4",
    )
    result = run_script("deploy/gce/create_gpu_vm.sh", "--dry-run", env=env)
    assert result.returncode == 0, result.stderr
    command = shlex.split(result.stdout)
    assert command[:4] == ["gcloud", "compute", "instances", "create"]
    args = dict(a[2:].split("=", 1) for a in command[5:] if a.startswith("--") and "=" in a)
    assert args["accelerator"] == "type=nvidia-tesla-t4,count=8"
    assert args["provisioning-model"] == "SPOT" and args["instance-termination-action"] == "STOP"
    assert args["metadata-from-file"].startswith("startup-script=")
    assert os.path.isfile(os.path.join(REPO, args["metadata-from-file"].split("=", 1)[1]))

    separator, entries = re.fullmatch(r"\^(.+?)\^(.*)", args["metadata"]).groups()
    metadata = dict(e.split("=", 1) for e in entries.split(separator))
    assert metadata["dfd-extra-args"] == "--epochs=3,4"  # commas survive
    assert metadata["dfd-model-dir"] == "gs://b/runs/r1"
    with open(os.path.join(REPO, "deploy", "gce", "startup.sh"), encoding="utf-8") as f:
        read_by_startup = set(re.findall(r"\$\(metadata (dfd-[a-z-]+)\)", f.read()))
    assert read_by_startup == {k for k in metadata if k.startswith("dfd-")}


@pytest.mark.parametrize("dockerfile", ["Dockerfile.gpu", "Dockerfile.cpu", "Dockerfile.serve"])
def test_dockerfile_passes_hadolint(dockerfile):
    hadolint = os.path.join(os.path.dirname(sys.executable), "hadolint")
    lint = subprocess.run(
        [
            hadolint,
            "--no-color",
            "--failure-threshold=info",
            os.path.join(REPO, "deploy", "docker", dockerfile),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_dockerfiles_follow_the_image_contract():
    with open(os.path.join(REPO, "deploy", "docker", "Dockerfile.gpu"), encoding="utf-8") as f:
        gpu = f.read()
    assert re.search(r"^FROM tensorflow/tensorflow:2\.21\.0-gpu$", gpu, re.M)
    assert re.search(r'^RUN python3 -m pip install "\.\[gpu\]"', gpu, re.M)
    assert re.search(r"^USER 1000:1000$", gpu, re.M) and "useradd --create-home --uid 1000" in gpu
    assert re.search(r'^ENTRYPOINT \["dfd-train"\]$', gpu, re.M)
    with open(os.path.join(REPO, "setup.py"), encoding="utf-8") as f:
        assert "dfd-train=trainer.task:run_main" in f.read()

    with open(os.path.join(REPO, "deploy", "docker", "Dockerfile.cpu"), encoding="utf-8") as f:
        cpu = f.read()
    stages = re.findall(r"^FROM \S+(?: AS (\w+))?$", cpu, re.M)
    assert stages == ["app", "beam", "dataflow", "runtime"]  # runtime, the last, is the default
    runtime = cpu.split("AS runtime", 1)[1]
    assert re.search(r"^USER 1000:1000$", runtime, re.M)
    assert 'ENTRYPOINT ["/opt/apache/beam/boot"]' in cpu.split("AS dataflow", 1)[1].split("FROM")[0]

    with open(os.path.join(REPO, "deploy", "docker", "Dockerfile.serve"), encoding="utf-8") as f:
        serve = f.read()
    assert re.search(r'^RUN python -m pip install "\.\[cpu\]"', serve, re.M)
    assert re.search(r"^USER 1000:1000$", serve, re.M)
    assert re.search(r'^ENTRYPOINT \["dfd-serve", "--host=0.0.0.0", "--port=8501"\]$', serve, re.M)

    with open(os.path.join(REPO, ".dockerignore"), encoding="utf-8") as f:
        ignored = {line.strip() for line in f if line.strip() and not line.startswith("#")}
    assert {".git", ".venv"} <= ignored
    assert not ignored & {
        "setup.py",
        "README.md",
        "preprocessing",
        "trainer",
        "deploy",
        "tfds_builder",
    }  # what `pip install .` needs
