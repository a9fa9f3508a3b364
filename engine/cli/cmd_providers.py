"""``keyturn providers list|show ID``: the built-in provider templates."""

from __future__ import annotations

import argparse
import json
from typing import Any

from engine.errors import NotFound


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "providers",
        help="list or show the built-in provider templates",
        description="The built-in provider templates a config entry names with provider_id.",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = actions.add_parser("list", help="list the templates", description="List the built-in templates.")
    ls.set_defaults(func=run_list)
    show = actions.add_parser("show", help="show one template", description="Print one template as JSON.")
    show.add_argument("id", help="template id, e.g. github")
    show.set_defaults(func=run_show)


def run_list(args: argparse.Namespace) -> int:
    from engine.providers.catalog import load_template, template_ids

    for tid in template_ids():
        template = load_template(tid)
        print(f"{tid:<12} {template.name}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    from engine.errors import ConfigError
    from engine.providers.catalog import load_template
    from engine.providers.describe import describe_template

    try:
        template = load_template(args.id)
    except ConfigError as exc:
        raise NotFound(exc.msg) from None
    print(json.dumps(describe_template(template), indent=2, sort_keys=True))
    return 0
