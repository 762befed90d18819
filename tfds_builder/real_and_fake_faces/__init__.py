"""TFDS builder for the Kaggle "140k Real and Fake Faces" layout (`real_and_fake_faces`)."""
