"""Compiled inference: the same networks run by torch (the reference) or by OpenVINO's CPU runtime.

Torch stays the reference implementation, the training framework and the source of every weight;
OpenVINO runs the very same modules, converted from them at load time except those shipped ahead
of time (YuNet's yunet.xml, written by its converter beside its weights, and the int8 encoder
`facever quantize` made), with the arithmetic pinned to the precision asked for. Parity with torch
is tested on real faces (tests/integration/test_engine_parity.py).

The modules: compile (a network made ready for an engine), openvino (the OpenVINO runtime behind a
torch module's face), precision (torch's reduced precisions) and cpu (the CPU and any ISA cap held
on it; torch-free). This file imports nothing, so that cpu can be imported without torch.
"""
