"""YAML in, plain data out, with limits: nesting depth, nodes added by aliases, number sizes.

A small file can still ask for a lot: ten nested aliases of ten ("billion laughs") expand to a
billion nodes, 3,000 nested brackets overflow every recursive walk, a 5,000-digit integer is more
than Python will parse. The document's node graph is checked before anything is constructed, so
none of these gets further than a one-line error that names the line.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from monitor.config import limits as L

#: The C parser (libyaml) when PyYAML was built with it: several times faster on large lists.
_Base: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class YamlProblem(Exception):
    """Why a text is not a usable YAML document, with the line where that shows."""


class ConfigLoader(_Base):  # type: ignore[misc, valid-type]
    """A safe loader that refuses duplicate keys (PyYAML silently keeps the last one).

    It also reads plain scalars the YAML 1.2 way: YAML 1.1 would turn an unquoted event ID
    such as 01234567 into the octal number 342391, 12:30 into 750 and NO into false.

    Resolving and constructing scalars are PyYAML's slowest steps and a config may list a
    million event IDs, so both have a shorter path here with the same results (this loader has
    no path resolvers, and a plain string needs no constructor).
    """

    def resolve(self, kind: type[Node], value: Any, implicit: tuple[bool, bool]) -> str:
        if kind is ScalarNode:
            if implicit[0]:
                for tag, regexp in _SCALAR_RESOLVERS.get(value[:1], _WILDCARD):
                    if regexp.match(value):
                        return tag
            return _STR_TAG
        return str(super().resolve(kind, value, implicit))

    def descend_resolver(self, current_node: Any, current_index: Any) -> None:
        """No path resolvers: nothing to track."""

    def ascend_resolver(self) -> None:
        """No path resolvers: nothing to track."""

    def construct_sequence(self, node: Node, deep: bool = False) -> list[Any]:
        if not isinstance(node, SequenceNode):
            return super().construct_sequence(node, deep)  # type: ignore[no-any-return]
        construct = self.construct_object
        return [
            child.value
            if child.__class__ is ScalarNode and child.tag == _STR_TAG
            else construct(child, deep=deep)
            for child in node.value
        ]


_INT_TAG = "tag:yaml.org,2002:int"
_BOOL_TAG = "tag:yaml.org,2002:bool"
ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_INT_TAG, _BOOL_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
ConfigLoader.add_implicit_resolver(
    _INT_TAG, re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$"), list("-+0123456789")
)
ConfigLoader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


_STR_TAG = "tag:yaml.org,2002:str"
#: Implicit resolvers by a scalar's first character, each list with the wildcard ones after.
_WILDCARD: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    ConfigLoader.yaml_implicit_resolvers.get(None, [])
)
_SCALAR_RESOLVERS: dict[str, tuple[tuple[str, re.Pattern[str]], ...]] = {
    first: tuple(resolvers) + _WILDCARD
    for first, resolvers in ConfigLoader.yaml_implicit_resolvers.items()
    if first is not None
}


def _construct_mapping(loader: ConfigLoader, node: MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    out: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node)
        if not isinstance(key, str | int | float | bool) and key is not None:
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain value", key_node.start_mark
            )
        if key in out:
            shown = repr(key) if len(repr(key)) <= 80 else repr(key)[:80] + "..."
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {shown}", key_node.start_mark
            )
        out[key] = loader.construct_object(value_node)
    return out


ConfigLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _construct_int(loader: ConfigLoader, node: ScalarNode) -> int | str:
    # Python parses at most 4,300 digits; a longer number is kept as its text, which every
    # field refuses (no number and no ID is that long), at its own key path.
    if len(node.value) > 4_000:
        return str(node.value)
    return int(yaml.SafeLoader.construct_yaml_int(loader, node))


ConfigLoader.add_constructor(_INT_TAG, _construct_int)


def _marked(
    constructor: Callable[[ConfigLoader, ScalarNode], Any],
) -> Callable[[ConfigLoader, ScalarNode], Any]:
    """A scalar constructor whose ValueError (a date such as 2024-02-30, !!float abc) is a
    ConstructorError at the node, like every other YAML problem."""

    def construct(loader: ConfigLoader, node: ScalarNode) -> Any:
        try:
            return constructor(loader, node)
        except (ValueError, OverflowError, TypeError) as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"invalid {node.tag.rsplit(':', 1)[-1]}: {exc}", node.start_mark
            ) from None

    return construct


for _tag in ("int", "float", "timestamp", "binary", "bool", "null"):
    _full = f"tag:yaml.org,2002:{_tag}"
    ConfigLoader.add_constructor(_full, _marked(ConfigLoader.yaml_constructors[_full]))


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return node.value  # type: ignore[no-any-return]
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def check_tree(root: Node) -> None:
    """Refuse a node graph nested deeper than YAML_DEPTH_MAX, or whose aliases, expanded, add
    more than YAML_ALIAS_NODES_MAX nodes (or point back into themselves). Each distinct node is
    looked at once, so checking costs what the document costs, not what it expands to."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    distinct = 0
    stack: list[tuple[Node, bool]] = [(root, False)]
    open_: set[int] = set()
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            open_.discard(key)
            kids = [k for k in _children(node) if not isinstance(k, ScalarNode)]
            scalars = len(_children(node)) - len(kids)
            size[key] = 1 + scalars + sum(size[id(k)] for k in kids)
            depth[key] = 1 + max((depth[id(k)] for k in kids), default=1 if scalars else 0)
            if depth[key] > L.YAML_DEPTH_MAX:
                raise YamlProblem(_at(node, f"nested more than {L.YAML_DEPTH_MAX} levels deep"))
            continue
        if key in size:
            continue
        if key in open_:
            raise YamlProblem(_at(node, "an alias refers to a node that contains it"))
        open_.add(key)
        distinct += 1
        stack.append((node, True))
        for kid in _children(node):
            if isinstance(kid, ScalarNode):
                distinct += 1
            elif id(kid) not in size:
                stack.append((kid, False))
    if size.get(id(root), 1) - distinct > L.YAML_ALIAS_NODES_MAX:
        raise YamlProblem(
            f"aliases expand to more than {L.YAML_ALIAS_NODES_MAX:,} further nodes (an alias bomb?)"
        )


def _at(node: Node, message: str) -> str:
    mark = node.start_mark
    return f"line {mark.line + 1}, column {mark.column + 1}: {message}"


def load_yaml(text: str) -> Any:
    """The document in `text` as plain data; YamlProblem (naming the line) when it is not
    YAML, or is over a limit."""
    loader = ConfigLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        check_tree(node)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise YamlProblem(f"{where}{problem}") from None
    except RecursionError:
        raise YamlProblem(f"nested more than {L.YAML_DEPTH_MAX} levels deep") from None
    finally:
        loader.dispose()
