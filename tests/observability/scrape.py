"""Reading a /metrics answer: every sample as {(name, labels): value}."""

from collections.abc import Iterable

from prometheus_client.parser import text_string_to_metric_families

Key = tuple[str, frozenset[tuple[str, str]]]


def samples(exposition: str) -> dict[Key, float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def key(name: str, **labels: str) -> Key:
    return name, frozenset(labels.items())


def moved(
    before: dict[Key, float], after: dict[Key, float], prefixes: Iterable[str]
) -> dict[Key, float]:
    """The samples of these series whose value changed, with the change."""
    prefixes = tuple(prefixes)
    return {
        k: after[k] - before.get(k, 0.0)
        for k in after
        if k[0].startswith(prefixes)
        and not k[0].endswith("_created")
        and after[k] != before.get(k, 0.0)
    }
