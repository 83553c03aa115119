"""Every HTML page Plumbline writes comes from a Jinja2 template in pipelines/templates/, with
autoescaping on: whatever a partner typed, and every figure, is escaped on the way out.

Jinja2 is imported at the first page, not with the definitions (about 0.1 s of every run's
start; `plumbline run` loads it on a spare moment while ingest waits on its validation)."""

from __future__ import annotations

from functools import cache
from typing import Any


@cache
def templates():
    from jinja2 import Environment, PackageLoader, select_autoescape

    return Environment(loader=PackageLoader("pipelines", "templates"),
                       autoescape=select_autoescape(["html", "j2"]),
                       trim_blocks=True, lstrip_blocks=True)


def render(template: str, **context: Any) -> str:
    return templates().get_template(template).render(**context)
