"""The HTTP service: uploads in, verification decisions and embeddings out. Never touches tensors."""
