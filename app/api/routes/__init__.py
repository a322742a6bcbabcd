"""Routes are thin: read the request, resolve what it asks, hand the work to the limiter, shape the answer."""
