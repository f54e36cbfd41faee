"""Reading untrusted YAML: the one strict loader for configs, sweep plans and ``--set`` values.

On top of ``yaml.SafeLoader`` (no tags that build objects) it refuses a key given twice in one
mapping, and it bounds what a small file can cost before anything is built from it: the text's
size, the nesting depth (PyYAML composes recursively, so deep nesting is a ``RecursionError``)
and the number of values once aliases are expanded (a "billion laughs" of a few hundred bytes
otherwise takes gigabytes as soon as anything walks it). The bounds are checked on PyYAML's
event stream, which is built without recursion and without expanding an alias. Every refusal
is one ``ConfigError`` line that quotes at most a short excerpt of the text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from utils.errors import ConfigError

MAX_BYTES = 1 << 20  # the shipped configs and plans are a few kB
MAX_DEPTH = 32  # a config nests 2 levels, a plan 4
MAX_VALUES = 100_000  # scalars and collections, aliases expanded
EXCERPT_CHARS = 60


class DuplicateKeyError(yaml.YAMLError):
    """A key given twice in one mapping."""


class YamlLimitError(yaml.YAMLError):
    """YAML over one of the loader's bounds: size, depth or values with aliases expanded."""


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
                raise DuplicateKeyError(f"line {line}: duplicate key {excerpt(key)}")
        return super().construct_mapping(node, deep)


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """``repr(value)`` cut to about ``limit`` characters, for an error line about an untrusted
    value (a string is cut before ``repr``, so a huge one costs nothing)."""
    if isinstance(value, str) and len(value) > limit:
        return repr(value[:limit]) + f"... ({len(value)} characters)"
    if isinstance(value, (list, tuple, dict, set)) and len(value) > 8:
        return f"a {type(value).__name__} of {len(value)} items"
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def check_bounds(text: str) -> None:
    """Refuse ``text`` over ``MAX_BYTES``, nested deeper than ``MAX_DEPTH`` or holding more than
    ``MAX_VALUES`` values with its aliases expanded, without building it."""
    if len(text) > MAX_BYTES:
        raise YamlLimitError(f"{len(text)} characters, more than the {MAX_BYTES} allowed")
    sizes: dict[str, int] = {}  # anchor -> values under it, expanded
    open_nodes: list[list[Any]] = [[None, 0]]  # [anchor, values so far] per open collection
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent):
            if event.anchor not in sizes:  # undefined, or an alias inside its own anchor
                line, anchor = event.start_mark.line + 1, excerpt(event.anchor)
                raise YamlLimitError(f"line {line}: alias {anchor} refers to no finished value")
            added = sizes[event.anchor]
        elif isinstance(event, yaml.ScalarEvent):
            added = 1
            if event.anchor:
                sizes[event.anchor] = 1
        elif isinstance(event, yaml.CollectionStartEvent):
            open_nodes.append([event.anchor, 1])
            if len(open_nodes) - 1 > MAX_DEPTH:
                line = event.start_mark.line + 1
                raise YamlLimitError(f"line {line}: nested deeper than {MAX_DEPTH} levels")
            continue
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, added = open_nodes.pop()
            if anchor:
                sizes[anchor] = added
        else:
            continue
        open_nodes[-1][1] += added
        if open_nodes[-1][1] > MAX_VALUES:
            raise YamlLimitError(f"more than {MAX_VALUES} values once its aliases are expanded")


def parse_yaml(text: str) -> Any:
    """YAML text as plain data, within the bounds of ``check_bounds``, with
    ``UniqueKeyLoader`` (a SafeLoader that refuses a key given twice)."""
    check_bounds(text)
    return yaml.load(text, Loader=UniqueKeyLoader)


def yaml_problem(err: yaml.YAMLError) -> str:
    """One short line for a refused or malformed text: PyYAML's messages go on to quote it."""
    if isinstance(err, (DuplicateKeyError, YamlLimitError)):
        return str(err)
    first = str(err).splitlines()[0] if str(err) else type(err).__name__
    return f"not valid YAML ({first[:120]})"


def read_yaml_file(path: Path) -> Any:
    """Any YAML document of a file, through ``parse_yaml``; every failure is one ConfigError
    naming the file (one that is not UTF-8, over the size bound, missing or unreadable)."""
    try:
        with path.open("rb") as file:
            data = file.read(MAX_BYTES + 1)
        if len(data) > MAX_BYTES:
            raise YamlLimitError(f"larger than the {MAX_BYTES} bytes allowed")
        return parse_yaml(data.decode())
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror or type(err).__name__})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (it is not UTF-8)") from None
    except DuplicateKeyError as err:
        raise ConfigError(f"{path}: {err}; give each key once") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: {yaml_problem(err)}") from None


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML mapping of a file, through ``read_yaml_file``; an empty file is an empty one."""
    raw = read_yaml_file(path)
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    return raw
