"""Page templates kept as files inside a package (HTML, CSS, JS), filled with `string.Template`.

Why files: markup and scripts are easier to read, diff and check as files than as Python strings,
and they ship as package data. `$name` placeholders are filled by the page module, which escapes
every value it puts in (`html.escape`, or JSON with `</` escaped for a script block).
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from string import Template
from typing import Any


@functools.lru_cache(maxsize=None)
def asset_text(package: str, name: str) -> str:
    """The text of file `name` shipped in `package` (read once per process)."""
    return resources.files(package).joinpath(name).read_text(encoding="utf-8")


def render(package: str, name: str, **values: str) -> str:
    """Fill template `name` of `package`; a placeholder without a value raises KeyError naming it."""
    return Template(asset_text(package, name)).substitute(values)


def json_for_script(data: Any) -> str:
    """JSON safe inside `<script type="application/json">` (no `</script>` can end the block early)."""
    return json.dumps(data, ensure_ascii=False).replace("</", "<\\/")
