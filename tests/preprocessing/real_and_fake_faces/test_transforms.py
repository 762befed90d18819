"""real_and_fake_faces.transforms on a TestPipeline (in-process FnApiRunner), without TFDS."""

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from PIL import Image
import pytest

from preprocessing import schema
from preprocessing.building import inputs as inputs_lib
from preprocessing.building import ledger
from preprocessing.real_and_fake_faces import transforms
from tests.preprocessing import planted


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    good = planted.encode(Image.fromarray(planted._pixels(0)))
    files = {"a.jpg": good, "b.jpg": good, "c.jpg": b"", "d.jpg": b"plain text"}
    for name, data in files.items():
        (folder / name).write_bytes(data)

    def source(name, split, label=schema.FAKE, problem=""):
        return inputs_lib.SourceFile(
            id=f"{split}/{name}", path=str(folder / name), split=split, label=label, problem=problem
        )

    return [
        source("a.jpg", "train"),
        source("b.jpg", "test"),
        source("c.jpg", "train"),
        source("d.jpg", "validation", schema.REAL),
        source("gone.jpg", "train", problem=inputs_lib.MISSING_FILE),
    ]


def _outcomes(ledger):
    return ledger | beam.Map(lambda r: (r["id"], r["outcome"], r["reason"], r["duplicate"]))


@pytest.mark.parametrize(
    "duplicates,leak",
    [
        ("keep", ("test/b.jpg", "written", "", "duplicate_across_splits")),
        ("drop", ("test/b.jpg", "rejected", "duplicate_across_splits", "duplicate_across_splits")),
    ],
)
def test_build_examples_gives_one_ledger_record_per_input(inputs, duplicates, leak):
    with TestPipeline(runner=FnApiRunner()) as pipeline:
        built = pipeline | beam.Create(inputs) | transforms.BuildExamples(duplicates=duplicates)
        assert_that(
            _outcomes(built["ledger"]),
            equal_to(
                [
                    ("train/a.jpg", "written", "", ""),
                    leak,
                    ("train/c.jpg", "rejected", "zero_byte", ""),
                    ("validation/d.jpg", "rejected", "not_an_image", ""),
                    ("train/gone.jpg", "rejected", "missing_file", ""),
                ]
            ),
            label="CheckLedger",
        )
        train = built["examples"] | ledger.SelectSplit("train")
        assert_that(
            train | beam.Map(lambda kv: (kv[0], kv[1][schema.ID], kv[1][schema.LABEL])),
            equal_to([("train/a.jpg", "train/a.jpg", schema.FAKE)]),
            label="CheckTrain",
        )


def test_bad_duplicates_mode_and_split_are_named():
    with pytest.raises(ValueError, match="'sometimes'"):
        transforms.BuildExamples(duplicates="sometimes")
    with pytest.raises(ValueError, match="'valid'"):
        ledger.SelectSplit("valid")


def test_source_list_round_trips_through_a_file(inputs, tmp_path):
    path = inputs_lib.write_source_list(str(tmp_path / "inputs.jsonl"), inputs)
    with TestPipeline(runner=FnApiRunner()) as pipeline:
        assert_that(pipeline | ledger.ReadSourceList(path), equal_to(inputs))


def test_a_beam_counter_per_reject_reason(inputs):
    pipeline = TestPipeline(runner=FnApiRunner())
    built = pipeline | beam.Create(inputs) | transforms.BuildExamples(duplicates="drop")
    _ = built["examples"] | ledger.SelectSplit("train")
    result = pipeline.run()
    result.wait_until_finish()
    counters = {
        c.key.metric.name: c.committed
        for c in result.metrics().query(
            MetricsFilter().with_namespace(transforms.METRICS_NAMESPACE)
        )["counters"]
    }
    assert counters == {
        "rejected_zero_byte": 1,
        "rejected_not_an_image": 1,
        "rejected_missing_file": 1,
        "rejected_duplicate_across_splits": 1,
        "duplicate_across_splits": 1,
        "written_train": 1,
    }
