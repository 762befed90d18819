"""Training, export, evaluation and scoring of the real-vs-fake face detector.

TensorFlow is imported here first, quietly (`preprocessing.tf_startup`): every
trainer tool starts with its own lines, not with TensorFlow's start-up notes.
"""

from preprocessing import tf_startup

tf_startup.import_tensorflow()
