"""Input errors the model side raises; each carries a stable machine-readable code."""

from __future__ import annotations


class InputError(ValueError):
    """A request's input cannot be processed. `code` is stable and documented in the README."""

    code = "invalid_input"

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self)

    def about(self, subject: str) -> InputError:
        """The same error, its message prefixed with what it is about (e.g. which image)."""
        return type(self)(f"{subject}: {self}", self.code)


class InvalidImage(InputError):
    code = "invalid_image"


class UnsupportedFormat(InputError):
    code = "unsupported_format"


class ImageTooLarge(InputError):
    code = "image_too_large"


class NoFaceDetected(InputError):
    code = "no_face_detected"


class MultipleFaces(InputError):
    code = "multiple_faces"


class InvalidEmbedding(InputError):
    code = "invalid_embedding"


class IncompatibleEmbedding(InputError):
    code = "incompatible_embedding"
