"""Verification: the torch-free decision and result types, and the FaceVerifier pipeline."""
