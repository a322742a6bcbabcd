"""Everything torch: face detection and alignment, encoders, evaluation and calibration."""
