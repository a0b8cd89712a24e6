"""Render a flat `spec.key=value` mapping into the action's config file.

Keys are TAO spec paths: dots nest (`train.num_gpus`), `[n]` indexes lists
(`dataset.train_data_sources[0].json_file`). The result is YAML or TOML
text, or, for argument-style actions, a list of `--key value` arguments.
Pure: no I/O, so the bytes uploaded are exactly what tests inspect.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import yaml

_PART = re.compile(r"([^.\[\]]+)((?:\[\d+\])*)")


def _path(key: str) -> list[str | int]:
    out: list[str | int] = []
    for name, indexes in _PART.findall(key):
        out.append(name)
        out += [int(i) for i in re.findall(r"\[(\d+)\]", indexes)]
    return out


def nest(flat: Mapping[str, object]) -> dict:
    root: dict = {}
    for key, value in flat.items():
        parts = _path(key)
        node: dict | list = root
        for here, nxt in zip(parts, parts[1:]):
            empty: dict | list = [] if isinstance(nxt, int) else {}
            if isinstance(here, int):
                assert isinstance(node, list)
                while len(node) <= here:
                    node.append(None)
                if node[here] is None:
                    node[here] = empty
                node = node[here]
            else:
                assert isinstance(node, dict)
                node = node.setdefault(here, empty)
        last = parts[-1]
        if isinstance(last, int):
            assert isinstance(node, list)
            while len(node) <= last:
                node.append(None)
            node[last] = value
        else:
            node[last] = value  # type: ignore[index]
    return root


def render(flat: Mapping[str, object], config_format: str) -> str:
    nested = nest(flat)
    if config_format == "toml":
        import tomli_w

        return tomli_w.dumps(nested)
    if config_format == "yaml":
        return yaml.safe_dump(nested, sort_keys=True, default_flow_style=False)
    raise ValueError(f"no file format for config_format {config_format!r}")


def render_args(flat: Mapping[str, object]) -> list[str]:
    """Argument-style actions take `--key value` pairs instead of a file."""
    args: list[str] = []
    for key, value in flat.items():
        if value is True:
            args.append(f"--{key}")
        elif value not in (None, False):
            args += [f"--{key}", str(value)]
    return args
