"""TFDS builders of the project, their shared base (`beam_builder`) and launcher (`build`)."""
