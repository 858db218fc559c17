"""Stripe's form encoding: `metadata[order_id]=17&expand[]=x` into nested dicts and lists."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

_PART = re.compile(r"\[([^\]]*)\]")


def parse_form(body: str) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for raw_key, value in parse_qsl(body, keep_blank_values=True):
        head, _, rest = raw_key.partition("[")
        path = [head, *_PART.findall("[" + rest)] if rest else [head]
        node: Any = result
        for index, part in enumerate(path):
            last = index == len(path) - 1
            if part == "":  # list append: expand[]=a
                node.append(value)
                break
            if last:
                node[part] = value
            else:
                following_is_list = path[index + 1] == ""
                node = node.setdefault(part, [] if following_is_list else {})
    return result
