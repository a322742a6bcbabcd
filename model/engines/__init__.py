"""Compiled inference: the same networks run by torch (the reference) or by OpenVINO's CPU runtime.

Torch stays the reference implementation, the training framework and the source of every weight;
OpenVINO runs the very same modules, read from models saved ahead of time (YuNet's and MTCNN's,
written by their converters beside their weights, and the int8 encoders `facever quantize` made)
or converted from them at load time, with the arithmetic pinned to the precision asked for. Parity
with torch is tested on real faces (tests/integration/test_engine_parity.py, test_lean_parity.py).

The modules: compile (the one contract, NumPy in and flat NumPy outputs out, and the loaders),
openvino (the lean runtime; torch-free), reference (the torch engine), conversion (torch to
OpenVINO), precision and cpu (torch-free). This file imports nothing.
"""
