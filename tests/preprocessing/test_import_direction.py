"""The import graph points one way: tfds_builder and trainer -> preprocessing, never back."""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "preprocessing"


def _imported_modules(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module


def test_preprocessing_imports_neither_tfds_builder_nor_trainer():
    upward = {
        f"{path.name}: {module}"
        for path in sorted(PACKAGE.glob("*.py"))
        for module in _imported_modules(path)
        if module.split(".")[0] in ("tfds_builder", "trainer")
    }
    assert not upward, upward
