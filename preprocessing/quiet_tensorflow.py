"""Importing this module imports TensorFlow with its start-up notes kept off the console.

Each command-line tool that needs TensorFlow imports it first, above its other
imports (`preprocessing.tf_startup` says which notes and why):

    from preprocessing import quiet_tensorflow  # noqa: F401  (first: see its docstring)

    # isort: split
    import tensorflow as tf
    ...

A module of its own, imported for its effect, so that the packages stay free of
TensorFlow until a tool asks for it: `import trainer.metrics` loads numpy only.
"""

from preprocessing import tf_startup

tf_startup.import_tensorflow()
