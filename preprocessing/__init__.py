"""The data side of the project: the base every tool shares, decoding, and the dataset builds.

- At this root, the base (`schema`, `paths`, `gcs`, `cli`, `tf_startup`,
  `quiet_tensorflow`, `tool_logging`, `processes`), which imports nothing else
  of the project, and two commands: `synthetic` and `demo_media`.
- `media/`: decoding photos and videos, finding and aligning faces; the dataset
  builds and the trainer's inference both use it.
- `building/`: what every dataset build does the same way (runners, inputs,
  ledger, summary, archive, dataset folders, fingerprint).
- One folder per dataset, `real_and_fake_faces/` and `video_faces/`: how its
  inputs are listed and its Beam steps.

Imports neither `tfds_builder` nor `trainer`: both build on this package. The
dataset launchers, which import the builders, are `tfds_builder.build` and
`tfds_builder.build_videos`.
"""
