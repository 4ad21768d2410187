from django import template

from marketplace.money import Money

register = template.Library()


@register.simple_tag
def money(minor: int, currency: str) -> str:
    return Money(int(minor), currency).format()


@register.filter
def fmt(value: Money) -> str:
    return value.format()
