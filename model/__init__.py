"""Everything torch, one package per lifecycle: serving (verify/, faces/, encoders/, card, images),
evaluation/, training/ and convert/. The top-level modules types, card, paths, errors, files and
distance import no torch, so the HTTP service can use them without loading it."""
