"""TFDS builders of the project, their shared base (`beam_builder`) and their launchers.

The launchers are `build` (images) and `build_videos` (videos); `launcher` holds what they share.
"""
