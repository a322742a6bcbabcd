"""The API's request and response shapes."""
