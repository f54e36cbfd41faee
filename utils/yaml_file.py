"""Reading YAML safely: no tags that build objects, and no key given twice in one mapping."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from utils.errors import ConfigError


class DuplicateKeyError(yaml.YAMLError):
    """A key given twice in one mapping."""


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (tags such as ``!!python/object`` are rejected) that also refuses a
    key given twice in one mapping, where PyYAML would silently keep the last."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # keys merged in with << may be overridden
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if duplicate:
                line = key_node.start_mark.line + 1
                raise DuplicateKeyError(f"line {line}: duplicate key {key!r}")
        return super().construct_mapping(node, deep)


def parse_yaml(text: str) -> Any:
    """YAML text as plain data, with ``UniqueKeyLoader`` (a SafeLoader)."""
    return yaml.load(text, Loader=UniqueKeyLoader)


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping with ``UniqueKeyLoader``: no tags that build objects, no key twice."""
    try:
        raw = parse_yaml(path.read_text())
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (it is not UTF-8)") from None
    except DuplicateKeyError as err:
        raise ConfigError(f"{path}: {err}; give each key once") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    return raw
