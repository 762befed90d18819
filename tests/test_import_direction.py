"""The import rules of docs/architecture.md, checked over every module in every subfolder.

Each module is placed by its path (tests are not product code and may import
anything):

    preprocessing/*.py               base      imports only base
    preprocessing/media/             media     base, media
    preprocessing/building/          building  base, building
    preprocessing/<dataset>/         dataset   base, media, building, its own folder
    trainer/*.py with run_main       command   preprocessing, trainer (not another command)
    trainer/*.py without             contract  preprocessing only
    trainer/<wing>/                  wing      preprocessing, contracts, its own wing
                                               (and the wings WING_USES lists: serving -> inference)
    tfds_builder/beam_builder.py     generic   preprocessing base and building only
    tfds_builder/<dataset>/          dataset   preprocessing (not another dataset), generic
    tfds_builder/*.py (launchers)    launcher  preprocessing, tfds_builder
    deploy/                          deploy    preprocessing base only

and nothing imports `deploy`, `preprocessing` imports neither `trainer` nor
`tfds_builder`, and `tfds_builder` never imports `trainer`. Imports inside
functions count too. `check` is run on a planted tree as well, so a rule that
stopped checking (a glob one level deep, say) fails here.
"""

import ast
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("preprocessing", "trainer", "tfds_builder", "deploy")
# The one wing that stands on another: serving puts inference behind HTTP and must reuse its
# scoring path (one path: the same record as dfd-predict), never copy it. Nothing imports serving.
WING_USES = {"serving": {"inference"}}


def _imports(path: pathlib.Path):
    """Every absolute module an import in `path` names (`from a import b` gives a and a.b)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def _is_command(path: pathlib.Path) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return any(isinstance(n, ast.FunctionDef) and n.name == "run_main" for n in tree.body)


def _place(parts: tuple[str, ...], root: pathlib.Path):
    """(package, kind, name) of the module at `parts` (a path under `root`, without .py)."""
    package = parts[0]
    if len(parts) == 1:
        return package, "package", ""
    if package == "deploy":
        return package, "deploy", ""
    if package == "preprocessing":
        if len(parts) == 2:
            return package, "base", ""
        return package, parts[1] if parts[1] in ("media", "building") else "dataset", parts[1]
    if package == "trainer":
        if len(parts) == 2:
            path = root.joinpath(*parts).with_suffix(".py")
            command = path.exists() and _is_command(path)
            return package, "command" if command else "contract", parts[1]
        return package, "wing", parts[1]
    if len(parts) == 2:  # tfds_builder
        return package, "generic" if parts[1] == "beam_builder" else "launcher", parts[1]
    return package, "dataset", parts[1]


def _module_parts(module: str, root: pathlib.Path) -> tuple[str, ...] | None:
    """The path parts of the project module `module` names (a name inside it: its module)."""
    parts = tuple(module.split("."))
    while parts:
        if root.joinpath(*parts).with_suffix(".py").exists() or root.joinpath(*parts).is_dir():
            return parts
        parts = parts[:-1]
    return None


def _allowed(importer, imported) -> bool:
    (package, kind, name), (to_package, to_kind, to_name) = importer, imported
    if to_kind == "package":  # `import trainer`: the package itself, for its folder.
        return to_package == package or to_package == "preprocessing"
    if to_package == "deploy":
        return package == "deploy"
    if package == "preprocessing":
        own = {
            "base": {"base"},
            "media": {"base", "media"},
            "building": {"base", "building"},
            "dataset": {"base", "media", "building", "dataset"},
        }[kind]
        return (
            to_package == "preprocessing"
            and to_kind in own
            and (to_kind != "dataset" or to_name == name)
        )
    if package == "deploy":
        return to_package == "preprocessing" and to_kind == "base"
    if package == "tfds_builder":
        if to_package == "trainer":
            return False
        if kind == "generic":
            return (to_package, to_kind) in {
                ("preprocessing", "base"),
                ("preprocessing", "building"),
            }
        if kind == "dataset":
            if to_kind == "dataset":
                return to_name == name
            return to_package == "preprocessing" or to_kind == "generic"
        return True  # Launchers import what they launch.
    # trainer
    if to_package == "preprocessing":
        return True
    if to_package != "trainer":
        return False
    if kind == "contract":
        return False
    if kind == "wing":
        return to_kind == "contract" or (
            to_kind == "wing" and (to_name == name or to_name in WING_USES.get(name, ()))
        )
    return to_kind in ("contract", "wing")  # A command: never another command.


def check(root: pathlib.Path) -> list[str]:
    """'file: imported module' for every import that breaks a rule, under `root`."""
    problems = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root)
            if path.name.endswith("_test.py") or "dummy_data" in relative.parts:
                continue
            parts = relative.with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            importer = _place(parts, root)
            for module in sorted(set(_imports(path))):
                if module.split(".")[0] not in PACKAGES:
                    continue
                target = _module_parts(module, root)
                if target is None or target == parts:
                    continue
                if not _allowed(importer, _place(target, root)):
                    problems.append(f"{relative}: {'.'.join(target)}")
    return sorted(set(problems))


def test_the_project_keeps_every_rule():
    assert check(REPO) == []


def _write(root: pathlib.Path, relative: str, text: str = "") -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_a_planted_wrong_way_import_two_folders_down_is_found(tmp_path):
    for folder in (
        "preprocessing",
        "preprocessing/building",
        "preprocessing/video_faces",
        "trainer",
        "trainer/training",
        "trainer/inference",
        "trainer/inference/deep",
        "trainer/serving",
        "tfds_builder",
        "deploy",
    ):
        _write(tmp_path, f"{folder}/__init__.py")
    _write(tmp_path, "preprocessing/schema.py")
    _write(tmp_path, "preprocessing/video_faces/sources.py", "from preprocessing import schema\n")
    _write(tmp_path, "trainer/training/train_lib.py")
    _write(tmp_path, "trainer/export.py")
    _write(tmp_path, "trainer/predict.py", "def run_main():\n    pass\n")
    _write(tmp_path, "trainer/inference/media.py")
    _write(tmp_path, "trainer/serving/app.py", "from trainer.inference import media\n")
    assert check(tmp_path) == []

    _write(
        tmp_path,
        "trainer/inference/deep/x.py",
        "def f():\n    from trainer.training import train_lib\n",
    )
    _write(
        tmp_path,
        "preprocessing/building/ledger.py",
        "from preprocessing.video_faces import sources\n",
    )
    _write(tmp_path, "trainer/export.py", "import trainer.predict\n")
    _write(
        tmp_path, "tfds_builder/beam_builder.py", "from preprocessing.video_faces import sources\n"
    )
    _write(tmp_path, "deploy/storage.py", "from preprocessing.building import ledger\n")
    _write(tmp_path, "trainer/inference/media.py", "from trainer.serving import app\n")
    assert check(tmp_path) == [
        "deploy/storage.py: preprocessing.building.ledger",
        "preprocessing/building/ledger.py: preprocessing.video_faces.sources",
        "tfds_builder/beam_builder.py: preprocessing.video_faces.sources",
        "trainer/export.py: trainer.predict",
        "trainer/inference/deep/x.py: trainer.training.train_lib",
        "trainer/inference/media.py: trainer.serving.app",
    ]


def test_metrics_and_verdict_rules_import_without_tensorflow():
    code = (
        "import sys\n"
        "sys.modules['tensorflow'] = None  # Any import of TensorFlow now fails.\n"
        "import trainer, trainer.metrics, trainer.aggregation, trainer.evaluation, "
        "preprocessing.schema, preprocessing.cli\n"
        "print(trainer.metrics.roc_auc([0, 1], [0.2, 0.9]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "1.0"
