"""Reading a config file: YAML, ${ENV} interpolation, *_file secrets, validation, CSV event lists.

Every problem is collected with its key path and raised together as one ConfigError.
"""

from __future__ import annotations

import difflib
import operator
import os
import re
from collections.abc import Mapping
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

from monitor.config import limits as L
from monitor.config.errors import ConfigError, ConfigIssue, join_path
from monitor.config.event_files import load_event_files
from monitor.config.files import FileProblem, read_text
from monitor.config.listings import read_listings_csv
from monitor.config.models import Config
from monitor.config.yaml_input import YamlProblem, load_yaml
from monitor.logs import redact
from monitor.secrets import Secret

#: Keys that hold secrets; each may instead be given as `<key>_file: PATH`.
SECRET_KEYS = frozenset({"api_key", "client_secret", "secret", "admin_token", "api_token", "dsn"})
_ENV_RE = re.compile(r"\$\$|\$\{([^}]*)\}")
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

Path_ = tuple[str | int, ...]
_UNREADABLE = "<unreadable secret file>"


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Read and validate a config file; raises ConfigError listing every problem."""
    p = str(path)
    try:
        text = read_text(p, L.CONFIG_FILE_BYTES_MAX)
    except FileProblem as exc:
        raise ConfigError([ConfigIssue("", f"cannot read config file: {exc.reason}")], p) from None
    return parse_config(text, env=env, source=p)


def parse_config(
    text: str, *, env: Mapping[str, str] | None = None, source: str = "<config>"
) -> Config:
    """Validate config text; raises ConfigError listing every problem with its key path."""
    env = os.environ if env is None else env
    try:
        raw = load_yaml(text)
    except YamlProblem as exc:
        raise ConfigError([ConfigIssue("", f"invalid YAML: {exc}")], source) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([ConfigIssue("", "the config must be a mapping of sections")], source)

    issues: list[ConfigIssue] = []
    data = _interpolate(raw, (), env, issues)
    data = _read_secret_files(data, (), issues)
    secrets = _secret_values(data)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        reported = {issue.path for issue in issues}
        issues.extend(i for i in _pydantic_issues(exc, data) if i.path not in reported)
        raise ConfigError(_masked(issues, secrets), source) from None
    origins: dict[tuple[int, int], tuple[str, str]] = {}
    config = load_event_files(config, issues, origins)
    from monitor.config.catalog import check_catalog  # late: catalog needs the models

    check_catalog(config, issues, origins)
    _check_webhooks(config, issues)
    config = _check_actions(config, issues)
    if issues:
        raise ConfigError(_masked(issues, secrets), source)
    return config


def _check_webhooks(config: Config, issues: list[ConfigIssue]) -> None:
    """Unique names, and no URL that the SSRF guard would refuse anyway."""
    from monitor.notify.ssrf import BlockedAddress, check_url

    notifications = config.notifications
    seen: set[str] = set()
    for i, hook in enumerate(notifications.webhooks):
        if hook.name in seen:
            issues.append(
                ConfigIssue(f"notifications.webhooks[{i}].name", f"duplicate name {hook.name!r}")
            )
        seen.add(hook.name)
        try:
            check_url(hook.url, notifications.deny_private_networks)
        except BlockedAddress as exc:
            issues.append(ConfigIssue(f"notifications.webhooks[{i}].url", f"refused: {exc}"))


def _check_actions(config: Config, issues: list[ConfigIssue]) -> Config:
    """Every action rule would send a valid body; listings files are read in."""
    from monitor.marketplace.validation import validate_bulk_update

    if config.actions and config.marketplace is None:
        issues.append(ConfigIssue("actions", "actions need a marketplace section"))
    seen: set[str] = set()
    actions = []
    for i, action in enumerate(config.actions):
        here = f"actions[{i}]"
        if action.name in seen:
            issues.append(ConfigIssue(f"{here}.name", f"duplicate name {action.name!r}"))
        seen.add(action.name)
        for path, message in validate_bulk_update(action.update):
            issues.append(ConfigIssue(f"{here}.update.{path}", message))
        if action.listings_file is not None:
            extra = read_listings_csv(action.listings_file, f"{here}.listings_file", issues)
            merged = {k: list(v) for k, v in action.listings.items()}
            for eid, ids in extra.items():
                merged.setdefault(eid, []).extend(ids)
            action = action.model_copy(update={"listings": merged})
        if not action.listings:
            issues.append(ConfigIssue(f"{here}.listings", "no listings to act on"))
        actions.append(action)
    return config.model_copy(update={"actions": actions}) if config.actions else config


def _secret_values(node: Any) -> list[str]:
    """Every value given for a secret key, so that no message can echo one."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if (
                key in SECRET_KEYS
                and isinstance(value, str)
                and len(value) >= 4
                and "${" not in value  # an unresolved reference is not a secret
                and value != _UNREADABLE
            ):
                found.append(value)
            elif key == "secrets" and isinstance(value, list):
                found.extend(v for v in value if isinstance(v, str) and len(v) >= 4)
            else:
                found.extend(_secret_values(value))
    elif isinstance(node, list) and _has_containers(node):
        for value in node:
            found.extend(_secret_values(value))
    return found


def _masked(issues: list[ConfigIssue], secrets: list[str]) -> list[ConfigIssue]:
    if not secrets:
        return issues
    return [ConfigIssue(i.path, redact(i.message, secrets)) for i in issues]


_has_dollar = operator.methodcaller("__contains__", "$")


def _has_containers(items: list[Any]) -> bool:
    """Whether a list holds a mapping or a list (found at C speed)."""
    return bool(set(map(type, items)) & {dict, list})


def _plain_strings(items: list[Any]) -> bool:
    """Whether a list holds only strings without `$` (a million event IDs, say): walks over
    the config can leave such a list as it is, at C speed."""
    return set(map(type, items)) <= {str} and not any(map(_has_dollar, items))


def _interpolate(node: Any, path: Path_, env: Mapping[str, str], issues: list[ConfigIssue]) -> Any:
    if isinstance(node, dict):
        return {k: _interpolate(v, (*path, str(k)), env, issues) for k, v in node.items()}
    if isinstance(node, list):
        if _plain_strings(node):
            return node
        return [_interpolate(v, (*path, i), env, issues) for i, v in enumerate(node)]
    if not isinstance(node, str) or "$" not in node:
        return node

    def repl(m: re.Match[str]) -> str:
        if m[0] == "$$":
            return "$"
        name = m[1]
        if not _ENV_NAME_RE.fullmatch(name):
            issues.append(ConfigIssue(join_path(path), f"invalid variable reference ${{{name}}}"))
            return m[0]
        if name not in env:
            issues.append(ConfigIssue(join_path(path), f"environment variable {name} is not set"))
            return m[0]  # keep the reference so the rest of the file can still be checked
        return env[name]

    return _ENV_RE.sub(repl, node)


def _read_secret_files(node: Any, path: Path_, issues: list[ConfigIssue]) -> Any:
    if isinstance(node, list):
        if not _has_containers(node):
            return node
        return [_read_secret_files(v, (*path, i), issues) for i, v in enumerate(node)]
    if not isinstance(node, dict):
        return node
    out: dict[Any, Any] = {}
    for key, value in node.items():
        k = str(key)
        base = k[: -len("_file")] if k.endswith("_file") else None
        if base in SECRET_KEYS:
            here = join_path((*path, k))
            if base in node:
                issues.append(ConfigIssue(here, f"give either {base} or {k}, not both"))
                continue
            if not isinstance(value, str) or not value:
                issues.append(ConfigIssue(here, "expected a file path"))
                continue
            try:
                secret = read_text(value, L.SECRET_FILE_BYTES_MAX).strip()
            except FileProblem as exc:
                issues.append(ConfigIssue(here, str(exc)))
                secret = _UNREADABLE
            if not secret:
                issues.append(ConfigIssue(here, f"{value} is empty"))
                secret = _UNREADABLE
            # A placeholder keeps "required key is missing" from being reported a second time.
            out[base] = secret
        else:
            out[key] = _read_secret_files(value, (*path, k), issues)
    return out


def _pydantic_issues(
    exc: ValidationError, data: Any, model: type[BaseModel] = Config
) -> list[ConfigIssue]:
    """Pydantic's errors as issues with key paths, did-you-mean hints, no secrets echoed."""
    issues = []
    for err in exc.errors(include_url=False):
        loc = list(err["loc"])
        # A plain-string event entry was widened to {id: ...}: report it at the entry itself.
        if loc and loc[-1] == "id" and isinstance(_at(data, loc[:-1]), str | int):
            loc = loc[:-1]
        path = join_path(loc)
        kind = err["type"]
        if kind == "extra_forbidden":
            msg = "unknown key"
            known = _known_keys(model, loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), known, n=1)
            if close:
                msg += f" (did you mean {close[0]!r}?)"
            elif known:
                msg += f" (expected one of: {', '.join(sorted(known))})"
        elif kind == "missing":
            msg = "required key is missing"
            if loc and loc[-1] in SECRET_KEYS:
                msg += f" (or give {loc[-1]}_file)"
        else:
            msg = err["msg"]
            msg = msg.removeprefix("Value error, ")
            if (
                kind != "value_error"
                and "input" in err
                and not isinstance(err["input"], dict | list)
                and loc
                and not _holds_secret(model, loc)  # never echo a secret back
            ):
                shown = repr(err["input"])
                msg += f", got {shown if len(shown) <= 80 else shown[:80] + '...'}"
        issues.append(ConfigIssue(path, msg))
    return issues


validation_issues = _pydantic_issues


_SECRET_NAMES = SECRET_KEYS | {"secrets"}


def _holds_secret(model: type[BaseModel], loc: list[Any]) -> bool:
    """Whether the value at `loc` is, or is inside, a field that holds a secret: by its key's
    name anywhere on the path, or by the Secret type in the annotation of a field on it."""
    if any(str(part) in _SECRET_NAMES or str(part).endswith("_file") for part in loc):
        return True
    current: Any = model
    for part in loc:
        if isinstance(part, int) or not (
            isinstance(current, type) and issubclass(current, BaseModel)
        ):
            continue
        field = current.model_fields.get(str(part))
        if field is None:
            field = next((f for f in current.model_fields.values() if f.alias == part), None)
        if field is None:
            return False
        if _mentions_secret(field.annotation):
            return True
        current = _unwrap(field.annotation)
    return False


def _mentions_secret(annotation: Any) -> bool:
    if annotation is Secret:
        return True
    return any(_mentions_secret(a) for a in get_args(annotation))


def _at(data: Any, loc: list[Any]) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _known_keys(model: type[BaseModel], loc: list[Any]) -> list[str]:
    """The keys a model accepts at `loc` (for did-you-mean hints)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(str(part))
        if field is None:
            return []
        current = _unwrap(field.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _unwrap(annotation: Any) -> Any:
    while True:
        args = get_args(annotation)
        origin = get_origin(annotation)
        if origin is None or not args:
            return annotation
        models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        if models:
            return models[0]
        inner = [a for a in args if a is not type(None)]
        if not inner:
            return annotation
        annotation = inner[0]
