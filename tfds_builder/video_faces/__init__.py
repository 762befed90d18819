"""TFDS builder of face crops cut from videos (`video_faces`): folders, FF++, Celeb-DF."""
