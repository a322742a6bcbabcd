"""Domain errors of the model side: why an input cannot be used, and which input it is.

They speak no HTTP: the service maps each kind to a stable error code and its own wording
(app.errors). `input` names the offending input in the caller's terms, set by whoever knows them
(`about`): the service names a form field, a dataset its file.
"""

from __future__ import annotations

import copy


class InputError(ValueError):
    """An input that cannot be processed: `reason` says why, `input` which one (None: not named)."""

    def __init__(self, reason: str, input: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.input = input

    @property
    def message(self) -> str:
        return f"{self.input}: {self.reason}" if self.input else self.reason

    def __str__(self) -> str:
        return self.message

    def about(self, input: str) -> InputError:
        """The same error, naming the input it is about (outermost first where already named)."""
        named = copy.copy(self)
        named.input = input if self.input is None else f"{input}: {self.input}"
        return named


class InvalidImage(InputError):
    """Empty, undecodable, truncated or corrupt image data."""


class UnsupportedFormat(InputError):
    """An image in a format that is not decoded."""


class ImageTooLarge(InputError):
    """More pixels than the configured limit."""


class NoFaceDetected(InputError):
    """No face in an image that needs one."""


class MultipleFaces(InputError):
    """Several faces where the face policy ('reject') needs exactly one."""


class InvalidEmbedding(InputError):
    """An embedding of the wrong dimension, not finite, or not of unit length."""


class IncompatibleEmbedding(InputError):
    """An embedding made by another model or inference mode than the one serving."""


class LowQuality(InputError):
    """A face below the quality floor asked for."""


class UnknownOperatingPoint(InputError):
    """An operating point the card does not calibrate."""


class Uncalibrated(InputError):
    """A calibrated decision asked of an encoder that has none of that kind (1:1, subject, search)."""


class NoQualityModel(InputError):
    """A quality floor asked of an encoder whose card has no quality model."""


class AllFacesNeedAnImage(InputError):
    """The 'all' policy compares the faces of an image, and neither side is one."""
