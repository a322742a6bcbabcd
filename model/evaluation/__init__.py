"""Evaluation: metrics, protocols (LFW views, identity halves), dataset embeddings, evaluate, calibrate."""
