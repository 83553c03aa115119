"""Every HTML page Plumbline writes comes from a Jinja2 template in pipelines/templates/, with
autoescaping on: whatever a partner typed, and every figure, is escaped on the way out."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

TEMPLATES = Environment(loader=PackageLoader("pipelines", "templates"),
                        autoescape=select_autoescape(["html", "j2"]),
                        trim_blocks=True, lstrip_blocks=True)


def render(template: str, **context: Any) -> str:
    return TEMPLATES.get_template(template).render(**context)
