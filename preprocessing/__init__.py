"""Input checks, Beam transforms and build machinery that turn face images into datasets.

Imports neither `tfds_builder` nor `trainer`: both build on this package. The
dataset launcher, which imports the builder, is `tfds_builder.build`.
"""
