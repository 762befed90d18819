"""Beam transforms and launchers that turn face images into the TFDS dataset.

Imports neither `tfds_builder` nor `trainer`: both build on this package.
"""
