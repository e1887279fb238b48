"""YAML text (a config file, a `--set` value) to Python values, keeping numbers with a leading zero as written.

YAML 1.1 (PyYAML) reads `027` as the octal number 23, YAML 1.2 as 27; a user writing `umask: 027`
or `names: [007]` means neither. Such scalars stay the string they are (`"027"`); a key that needs
a number rejects them by name, a key that takes text (publish.umask, ids) gets what was typed.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

LEADING_ZERO = re.compile(r"^[-+]?0[0-7_]+$")


class _Loader(yaml.SafeLoader):
    """SafeLoader without YAML 1.1's leading-zero octal integers."""


_Loader.yaml_implicit_resolvers = {first: list(resolvers)
                                   for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
for _first in "-+0":
    _Loader.yaml_implicit_resolvers.setdefault(_first, []).insert(0, ("tag:yaml.org,2002:str", LEADING_ZERO))


def load_yaml(text: str) -> Any:
    """Parse YAML text as yaml.safe_load does, except that `027`-like scalars stay strings."""
    loader = _Loader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
