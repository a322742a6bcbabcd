"""Conversion: each shipped network from its original file into a weights folder, and fused cards."""
