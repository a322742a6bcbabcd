"""Reading the service's /metrics in tests with prometheus_client's own parser, so a test asserts
a sample's value, not the exposition's formatting."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """(sample name, its labels) -> value, for every sample of the exposition."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of the sample `name` with exactly these labels; None where there is none."""
    return samples(text).get((name, frozenset(labels.items())))


def metric_types(text: str) -> dict[str, str]:
    return {family.name: family.type for family in text_string_to_metric_families(text)}
