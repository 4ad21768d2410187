from django import template

from marketplace.models import PricePlan
from marketplace.money import Money

register = template.Library()


@register.simple_tag
def money(minor: int, currency: str) -> str:
    return Money(int(minor), currency).format()


@register.filter
def fmt(value: Money) -> str:
    return value.format()


@register.filter
def plan_name(kind: str) -> str:
    """A plan kind for people: "per_job" reads "Per job"."""
    try:
        return str(PricePlan.Kind(kind).label)
    except ValueError:
        return kind
