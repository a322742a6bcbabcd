"""Everything torch, one package per lifecycle: serving (verify/, faces/, encoders/, engines/, card,
images), evaluation/, training/ and convert/. The top-level modules types, card, paths, errors,
files, distance, images and registry, and engines.cpu, import no torch, so the HTTP service (and
what reads the CPU it runs on) can use them without loading it (tests/api/test_imports.py)."""
