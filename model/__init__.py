"""The model side, one package per lifecycle: serving (verify/, faces/, encoders/, engines/, card,
images), evaluation/, training/ and convert/. Serving is NumPy and OpenVINO and never imports torch
(tests/api/test_imports.py); torch, an optional extra, is the reference engine
(engines/reference.py), the networks' definitions, training and conversion."""
