"""The table the hostile-values tests share: the hostile values, every templated string field
of every step type (walked from the step-type registry's config models) and every string
parameter of every management operation (from the operations registry), and one minimal
config per type to put a field into.

A new config field or a new operation parameter is picked up by the walk; a new step type
gets a config from its model's required fields, or fails the coverage test asking for a
base config here.
"""

from __future__ import annotations

import copy
import inspect
import types
import typing
import uuid
from dataclasses import dataclass
from fnmatch import fnmatch
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from ansflow.steptypes import REGISTRY

TEMPLATE = "{{ vars.v }}"
KEY = "hvkey"  # the key a dict-valued field gets (its value is the templated leaf)
KEYS = (KEY, "requests")  # tried in turn when the model restricts a dict's keys
MARK_PREFIX = "/tmp/hvmark-"  # every value that could run code creates MARK_PREFIX + token


@dataclass(frozen=True)
class Hostile:
    """One hostile value: ``text`` with ``{mark}`` (a file that must never appear) and
    ``{victim_ns}`` (a namespace no request may touch) filled in by ``value``."""

    name: str
    text: str
    families: frozenset[str]

    def value(self, mark: str, victim_ns: str = "hv-victim") -> str:
        return self.text.replace("{mark}", mark).replace("{victim_ns}", victim_ns)


def _h(name: str, text: str, *families: str) -> Hostile:
    return Hostile(name, text, frozenset(families))


HOSTILE: tuple[Hostile, ...] = (
    _h("semicolon", "x; touch {mark}", "shell"),
    _h("subst", "$(touch {mark})", "shell"),
    _h("backticks", "`touch {mark}`", "shell"),
    _h("newline", "x\ntouch {mark}\n", "shell", "yaml"),
    _h("quotes", "x'\"; touch {mark} #", "shell"),
    _h("yaml-document", "x\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: hv-injected, "
       "namespace: {victim_ns}}\ndata: {k: v}\n", "yaml"),
    _h("yaml-structure", "1\n    injected: {privileged: true}\n  hv-injected: x", "yaml"),
    _h("jinja-lookup", "{{ lookup('pipe','touch {mark}') }}", "jinja"),
    _h("jinja-block", "{% set x = lookup('pipe','touch {mark}') %}{{ x }}", "jinja"),
    _h("jinja-class", "{{ ''.__class__.__mro__[1].__subclasses__() }}", "jinja"),
    _h("dotdot", "x/../../../kube-system/configmaps/victim", "path"),
    _h("dotdot-encoded", "%2e%2e/%2e%2e/%2e%2e/kube-system/configmaps/victim", "path"),
    _h("nul", "x\x00; touch {mark}", "bytes"),
    _h("long", "a" * (100 * 1024), "size"),
    # A non-UTF-8 byte from argv or the environment reaches Python as a lone surrogate.
    _h("non-utf8", "x\udcff\udcfe; touch {mark}", "bytes"),
)
HOSTILE_BY_NAME = {h.name: h for h in HOSTILE}


def new_mark() -> str:
    return f"{MARK_PREFIX}{uuid.uuid4().hex[:12]}"


# ---- walking the config models -------------------------------------------------------------

Path = tuple[Any, ...]


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _leaves(tp: Any, path: Path, seen: set[type]) -> list[Path]:
    origin, args = get_origin(tp), get_args(tp)
    if origin is typing.Annotated:
        # A str with validators is a string field; an annotated number (Duration) is not one
        # a template can stand in (it must parse as a number when the file is loaded).
        return _leaves(args[0], path, seen)
    if origin in (Union, types.UnionType):
        out: list[Path] = []
        for arg in args:
            out += [p for p in _leaves(arg, path, seen) if p not in out]
        return out
    if tp is str or tp is Any:
        return [path]
    if origin in (list, tuple, set, frozenset) and args:
        return _leaves(args[0], (*path, 0), seen)
    if origin is dict and len(args) == 2:
        return _leaves(args[1], (*path, KEY), seen)
    if _is_model(tp) and tp not in seen:
        return model_leaves(tp, path, seen | {tp})
    return []


def model_leaves(model: type[BaseModel], prefix: Path = (),
                 seen: set[type] | None = None) -> list[Path]:
    """Every place a string (and so a template) can stand in ``model``: a field path, with
    0 for a list's item and KEY for a dict's value."""
    out: list[Path] = []
    for name, info in model.model_fields.items():
        out += _leaves(info.annotation, (*prefix, name), seen or {model})
    return out


def path_text(path: Path) -> str:
    return ".".join(str(p) for p in path)


def with_leaf(config: dict, path: Path, value: Any) -> dict:
    """A copy of ``config`` with ``value`` at ``path``: containers are made on the way, a
    list's item 0 and, at KEY, a dict's first existing entry (a key the model allows) are
    replaced."""
    out = copy.deepcopy(config)
    node: Any = out
    for i, key in enumerate(path):
        last = i == len(path) - 1
        if key == KEY and isinstance(node, dict) and node:
            key = next(iter(node))
        if isinstance(key, int):
            if not isinstance(node, list):
                raise TypeError(f"no list at {path_text(path[:i])}")
            if not node:
                node.append(None)
        elif not isinstance(node, dict):
            raise TypeError(f"no mapping at {path_text(path[:i])}")
        if last:
            node[key] = value
            break
        child = node[key] if isinstance(key, int) else node.get(key)
        want = list if path[i + 1] == 0 else dict
        if not isinstance(child, want):
            child = want()
            node[key] = child
        node = child
    return out


def template_path(config: Any, path: Path = ()) -> Path | None:
    """Where TEMPLATE stands in ``config``."""
    if config == TEMPLATE:
        return path
    items = config.items() if isinstance(config, dict) else \
        enumerate(config) if isinstance(config, list) else ()
    for key, child in items:
        found = template_path(child, (*path, key))
        if found is not None:
            return found
    return None


def get_leaf(config: Any, path: Path) -> Any:
    node = config
    for key in path:
        node = node[0] if isinstance(key, int) else node[key]
    return node


# ---- a minimal config per step type --------------------------------------------------------
# Benign, fast and harmless on the test engines: `{x}` placeholders are filled by the
# end-to-end test (cluster, namespace, image, registry, ssh host); the pure test renders them
# as they are. Alternatives for fields that exclude each other (pod / pod_selector, ...).

BASE: dict[str, list[dict[str, Any]]] = {
    "command": [{"command": "true"}],
    "script": [{"script": "true"}, {"file": "hv-script.sh"}],
    "ansible": [{"playbook": "hv-playbook.yml", "inventory": "hv-inventory.ini"},
                {"playbook": "hv-playbook.yml", "hosts": ["{ssh_host}"]},
                {"playbook": "hv-playbook.yml", "inventory": "hv-inventory.ini",
                 "ansible_cfg": {"defaults": {"remote_user": "hv"}}}],
    "docker_build": [{"image_name": "hv/build", "context": "hv-context"}],
    "docker_run": [{"image": "{image}", "command": ["true"]}],
    "docker_push": [{"image": "hv/absent", "tag": "1", "registry": "{registry}"}],
    "docker_pull": [{"image": "hv/absent", "tag": "1", "registry": "{registry}"}],
    "k8s_deploy": [
        {"manifest": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: hv-cm}\n"
                     "data: {k: v}\n", "timeout": 10},
        {"deployment_spec": {"name": "hv-dep", "image": "hv/app:1"}, "timeout": 10},
        {"manifest_path": "hv-manifest.yaml", "timeout": 10},
        {"helm": {"chart": "./hv-chart", "release": "hv-rel"}, "timeout": 10},
        {"manifest": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "hv-cm2"},
                       "data": {"k": "v"}}], "timeout": 10},
    ],
    "k8s_wait": [{"resource_type": "configmap", "resource_name": "hv-present",
                  "condition": "jsonpath={.data.k}=v", "timeout": 5}],
    "k8s_exec": [{"pod": "hv-pod", "command": "true", "timeout": 10},
                 {"pod_selector": "app=hv-pod", "command": "true", "timeout": 10}],
    "k8s_scale": [{"resource_name": "hv-absent", "replicas": 1, "timeout": 5}],
    "k8s_restart": [{"resource_name": "hv-absent", "timeout": 5}],
    "k8s_rollback": [{"resource_name": "hv-absent", "timeout": 5}],
    "k8s_delete": [{"resource_type": "configmap", "resource_name": "hv-absent",
                    "ignore_not_found": True, "timeout": 5},
                   {"resource_type": "configmap", "label_selector": "hv=absent",
                    "ignore_not_found": True, "timeout": 5}],
    "k8s_logs": [{"pod": "hv-pod", "tail_lines": 1},
                 {"pod_selector": "app=hv-pod", "tail_lines": 1}],
    "approval": [{"timeout": 1}],
}


def _filled(model: type[BaseModel]) -> dict[str, Any]:
    """A config from the model's required fields alone (a type with no base config yet)."""
    out: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        if info.is_required():
            leaves = _leaves(info.annotation, (name,), {model})
            out = with_leaf(out, leaves[0], "hv") if leaves else {**out, name: 1}
    return out


def config_for(step_type: str, path: Path, value: Any = TEMPLATE) -> dict | None:
    """The first base config of ``step_type`` that the model accepts with ``value`` at
    ``path`` (as `ansflow validate` would see the raw config); None when none does."""
    model = REGISTRY[step_type].config
    for base in BASE.get(step_type) or [_filled(model)]:
        for key in KEYS:  # a dict whose keys the model restricts (resources: requests/limits)
            try:
                config = with_leaf(base, tuple(key if p == KEY else p for p in path), value)
                model.model_validate(config)
            except (TypeError, AttributeError, KeyError, ValidationError):
                continue
            return config
    return None


def placed(step_type: str, path: Path) -> Path:
    """``path`` as config_for placed it (the dict keys it chose)."""
    return template_path(config_for(step_type, path)) or path


def step_leaves() -> list[tuple[str, Path]]:
    """Every (step type, field path) of the registry where a template can stand."""
    return [(name, path) for name, entry in REGISTRY.items() if entry.implemented
            for path in model_leaves(entry.config)]


# ---- management operations -----------------------------------------------------------------


def _accepts_str(tp: Any) -> bool:
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        return any(_accepts_str(a) for a in args)
    return tp is str


def operation_string_params() -> list[tuple[str, str, str]]:
    """(operation, parameter, how): every run-form field of every management operation
    that takes free text: ``"str"`` a string field, ``"dict"`` a key-value field's value."""
    from ansflow.manage import load_operations

    out = []
    for name, op in sorted(load_operations().items()):
        for p in inspect.signature(op.func, eval_str=True).parameters.values():
            if p.kind is not inspect.Parameter.KEYWORD_ONLY:
                continue
            ann = p.annotation
            if _accepts_str(ann):
                out.append((name, p.name, "str"))
            elif any(get_origin(a) is dict for a in (ann, *get_args(ann))):
                out.append((name, p.name, "dict"))
    return out


# ---- known holes ---------------------------------------------------------------------------


def check_known(known_table: dict[tuple[str, str], str], value: str,
                problems: dict[str, str], ran: set[str] | None = None) -> None:
    """Every problem found for ``value`` is a known one (the table names the fix each waits
    on), and every known one still happens: strict both ways, so a new hole fails and a
    fixed one must leave the table. ``ran``: the cases this run had (a known case that did
    not run is not checked)."""
    known = {case: why for (v, case), why in known_table.items() if fnmatch(value, v)
             and (ran is None or any(fnmatch(c, case) for c in ran))}
    unexpected = {c: p for c, p in problems.items()
                  if not any(fnmatch(c, pattern) for pattern in known)}
    fixed = [pattern for pattern in known if not any(fnmatch(c, pattern) for c in problems)]
    lines = [f"{c}: {p[:400]}" for c, p in sorted(unexpected.items())]
    lines += [f"{pattern}: known to fail ({known[pattern]}) but passed: remove it from the "
              "known table" for pattern in fixed]
    assert not lines, f"{value}:\n" + "\n".join(lines)
