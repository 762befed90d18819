"""Training, evaluation and scoring of the real-vs-fake face detector.

The command-line tools sit at this package's root (`task`, `evaluate`, `matrix`,
`report`, `predict`, `batch_score`), thin over the libraries in its wings:
`training/`, `evaluation/` and `inference/`. The root also holds the contracts
every wing shares: the prepared dataset (`data`), the model (`model`), the export
(`export`), the metrics and the verdict rules (`metrics`, `aggregation`).
docs/architecture.md draws the layers and the import rules a test holds.

Importing the package loads nothing heavy; the tools load TensorFlow quietly
(`preprocessing.quiet_tensorflow`).
"""
