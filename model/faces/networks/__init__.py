"""The detectors' networks, apart from the cascade and decoding that turn their outputs into faces."""
