"""Face encoders. Importing this package registers every architecture."""

from model.encoders import compact_cnn  # noqa: F401  (registers "compact_cnn")
from model.encoders import dlib_resnet  # noqa: F401  (registers "dlib_resnet")
from model.encoders import fused  # noqa: F401  (registers "fused")
from model.encoders import sface  # noqa: F401  (registers "sface")
from model.encoders.registry import ENCODERS, build_encoder, register_encoder

__all__ = ["ENCODERS", "build_encoder", "register_encoder"]
