"""preprocessing.building.fingerprint: what a dataset was built from, and what differs now."""

import dataclasses

from preprocessing.building import fingerprint, inputs


def _inputs(*specs):
    return [
        inputs.SourceFile(id=i, path=f"/in/{i}", split="train", label=label, size=size)
        for i, label, size in specs
    ]


def test_same_listing_elsewhere_is_the_same_and_changes_are_named(tmp_path):
    before = _inputs(("train/real/a.jpg", 0, 10), ("train/fake/b.jpg", 1, 20))
    recorded = fingerprint.make(before, builder="d/c:1", options={"config": "c"}, manual_dir="/in")
    fingerprint.write(str(tmp_path), recorded, before, {"train/real/a.jpg": "aa"})

    moved = fingerprint.make(before, builder="d/c:1", options={"config": "c"}, manual_dir="/copy")
    assert fingerprint.check(str(tmp_path), moved, before) == ("same", [])

    now = [dataclasses.replace(before[0], size=11), *_inputs(("train/fake/new.jpg", 1, 5))]
    current = fingerprint.make(now, builder="d/c:1", options={"config": "x"}, manual_dir="/other")
    status, found = fingerprint.check(str(tmp_path), current, now)
    assert status == "different"
    assert found == [
        "built from /in, now /other",
        "option config='c' then, 'x' now",
        "2 inputs then, 2 now",
        "1 new (train/fake/new.jpg)",
        "1 gone (train/fake/b.jpg)",
        "1 with another size (train/real/a.jpg)",
    ]
    message = str(fingerprint.changed_error("/data/d/c/1", found))
    assert "--overwrite" in message and "1 gone (train/fake/b.jpg)" in message


def test_a_dataset_without_a_record_is_unrecorded(tmp_path):
    current = fingerprint.make(_inputs(("a", 0, 1)), builder="d", options={}, manual_dir="/in")
    assert fingerprint.check(str(tmp_path), current, []) == ("unrecorded", [])
