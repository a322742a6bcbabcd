"""Faces in an image: detection (YuNet, MTCNN; networks apart from their decoding), the choice of
one face, and alignment to an encoder's template."""
