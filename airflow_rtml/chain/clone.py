"""Experiments: a clone of a chain with a few parameters changed, sharing every node that did not change.

``clone(base_plan, "exp_b", {"features": {"window_minutes": 20}})`` changes one node's parameter. That node's
fingerprint changes, so do those of all nodes downstream of it (a fingerprint includes its inputs'), and only those
are *new* in the clone: new job names and new output datasets, named after the experiment. Every other node is
*shared*: the clone reads the base's outputs and starts no second job. A clone of a clone works the same way, so a
node is shared with whichever chain first ran it (its *owner*).

Pure Python: a plan says what runs under which name; starting and stopping it is the Airflow side's work.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from airflow_rtml.chain.model import ChainDefinition, NodeKind, _NAME
from airflow_rtml.exceptions import ChainDefinitionError, UnknownChainNode, UnknownChainParameter


@dataclass(frozen=True)
class Naming:
    """How a chain's logical names become physical ones.

    ``dataset("user_features")`` → ``rtml.demo.user-features`` (a topic; tables derive their names from it) and
    ``job("label_join")`` → ``rtml-demo-label-join``. An experiment's new nodes add its name:
    ``rtml.demo.exp-b.user-features``, ``rtml-demo-exp-b-label-join``.
    """

    topic_prefix: str = "rtml.demo"
    job_prefix: str = "rtml-demo"

    def for_experiment(self, experiment: str) -> Naming:
        tag = experiment.replace("_", "-")
        return Naming(f"{self.topic_prefix}.{tag}", f"{self.job_prefix}-{tag}")

    def dataset(self, name: str) -> str:
        return f"{self.topic_prefix}.{name.replace('_', '-')}"

    def job(self, node: str) -> str:
        return f"{self.job_prefix}-{node.replace('_', '-')}"


@dataclass(frozen=True)
class NodeInstance:
    """A node as it runs: under which names, and which chain owns (started) it."""

    node: str
    kind: NodeKind
    fingerprint: str
    owner: str
    job_name: str | None  # a stream node's Flink job name (its identity for adoption); None for batch nodes
    outputs: Mapping[str, str]  # dataset -> physical name
    inputs: Mapping[str, str]  # dataset -> physical name (a shared writer's, or a source's)

    @property
    def key(self) -> str:
        """The instance's identity across chains: owner and node."""
        return f"{self.owner}/{self.node}"


@dataclass(frozen=True)
class ChainPlan:
    """One chain (a base or an experiment) resolved to instances: what it runs itself and what it shares."""

    name: str
    definition: ChainDefinition
    naming: Naming
    instances: Mapping[str, NodeInstance]
    base: str | None = None
    sets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    root_naming: Naming | None = None  # the base chain's naming, from which every experiment's derives

    def source(self, dataset: str) -> str:
        """The physical name of a source dataset (sources are shared by every clone)."""
        for inst in self.instances.values():
            if dataset in inst.inputs and self.definition.writer(dataset) is None:
                return inst.inputs[dataset]
        return (self.root_naming or self.naming).dataset(dataset)

    @property
    def shared(self) -> list[str]:
        """Nodes this chain uses but another chain owns, upstream first."""
        return [n for n in self.definition.order if self.instances[n].owner != self.name]

    @property
    def owned(self) -> list[str]:
        """Nodes this chain runs itself (new in a clone), upstream first."""
        return [n for n in self.definition.order if self.instances[n].owner == self.name]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "base": self.base, "sets": {k: dict(v) for k, v in self.sets.items()},
                "order": list(self.definition.order),
                "instances": {n: {"key": i.key, "owner": i.owner, "kind": i.kind.value, "job_name": i.job_name,
                                  "fingerprint": i.fingerprint, "outputs": dict(i.outputs),
                                  "inputs": dict(i.inputs)} for n, i in self.instances.items()}}


def plan_chain(definition: ChainDefinition, naming: Naming, *, name: str | None = None,
               base: ChainPlan | None = None, sets: Mapping[str, Mapping[str, Any]] | None = None) -> ChainPlan:
    """Resolve ``definition`` to instances. With ``base``, a node whose fingerprint equals the base's is the base's
    instance (shared); the others are owned by ``name`` and named with ``naming``."""
    name = name or definition.name
    fingerprints = definition.fingerprints()
    instances: dict[str, NodeInstance] = {}
    for node_name in definition.order:
        node = definition.node(node_name)
        fp = fingerprints[node_name]
        theirs = base.instances.get(node_name) if base is not None else None
        if theirs is not None and theirs.fingerprint == fp:
            instances[node_name] = theirs
            continue
        inputs = {}
        for d in node.inputs:
            writer = definition.writer(d)
            inputs[d] = instances[writer].outputs[d] if writer else (
                base.source(d) if base is not None else naming.dataset(d))
        instances[node_name] = NodeInstance(
            node=node_name, kind=node.kind, fingerprint=fp, owner=name,
            job_name=naming.job(node_name) if node.kind.streaming else None,
            outputs=MappingProxyType({d: naming.dataset(d) for d in node.outputs}),
            inputs=MappingProxyType(inputs))
    return ChainPlan(name=name, definition=definition, naming=naming, instances=MappingProxyType(instances),
                     base=base.name if base is not None else None,
                     sets=MappingProxyType({k: MappingProxyType(dict(v)) for k, v in (sets or {}).items()}),
                     root_naming=(base.root_naming or base.naming) if base is not None else naming)


def parse_sets(definition: ChainDefinition, assignments: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``["features.window_minutes=20", ...]`` → ``{"features": {"window_minutes": 20}}``.

    A value is read as JSON (``20``, ``0.5``, ``true``, ``"x"``, ``[1, 2]``), else taken as a string; it must have
    the parameter's type (an ``int`` parameter takes ``20``, not ``"20"``; a ``float`` takes an integer too).
    Raises :class:`~airflow_rtml.exceptions.UnknownChainNode` / :class:`~airflow_rtml.exceptions.UnknownChainParameter`
    naming what exists, before anything starts.
    """
    result: dict[str, dict[str, Any]] = {}
    for raw in assignments:
        target, sep, text = raw.partition("=")
        node_name, dot, param = target.strip().partition(".")
        if not sep or not dot or not node_name or not param:
            raise UnknownChainParameter(
                f"--set {raw!r} is not NODE.PARAM=VALUE. To fix this, write e.g. --set features.window_minutes=20.")
        node = definition.node(node_name)  # UnknownChainNode lists the nodes
        if param not in node.params:
            raise UnknownChainParameter(
                f"Node {node_name!r} of chain {definition.name!r} has no parameter {param!r}. Its parameters: "
                f"{sorted(node.params) or 'none'}.")
        try:
            value: Any = json.loads(text)
        except ValueError:
            value = text
        current = node.params[param]
        if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)  # 1 for a float parameter is 1.0: the same node, not a new one
        if current is not None and not _same_type(current, value):
            if isinstance(current, str):
                value = text  # a string parameter takes the text as written ("20" stays "20")
            else:
                raise UnknownChainParameter(
                    f"--set {raw!r}: {node_name}.{param} is a {type(current).__name__} (now {current!r}), "
                    f"{value!r} is a {type(value).__name__}. To fix this, give a {type(current).__name__}.")
        result.setdefault(node_name, {})[param] = value
    return result


def _same_type(current: Any, value: Any) -> bool:
    if isinstance(current, bool) or isinstance(value, bool):
        return isinstance(current, bool) and isinstance(value, bool)
    if isinstance(current, float):
        return isinstance(value, (int, float))
    return type(current) is type(value)


def apply_sets(definition: ChainDefinition, sets: Mapping[str, Mapping[str, Any]]) -> ChainDefinition:
    """The definition with the parameters in ``sets`` replaced (names already checked by :func:`parse_sets`)."""
    for node_name, params in sets.items():
        node = definition.node(node_name)
        unknown = sorted(set(params) - set(node.params))
        if unknown:
            raise UnknownChainParameter(f"Node {node_name!r} has no parameter(s) {unknown}. "
                                        f"Its parameters: {sorted(node.params)}.")
    nodes = [replace(n, params={**n.params, **sets.get(n.name, {})}) for n in definition.nodes]
    return replace(definition, nodes=nodes)


def clone(base: ChainPlan, experiment: str, sets: Mapping[str, Mapping[str, Any]] | Iterable[str]) -> ChainPlan:
    """The plan of experiment ``experiment``: ``base`` with ``sets`` applied (a mapping, or ``NODE.PARAM=VALUE``
    strings). Nodes unchanged by the sets (and whose inputs are unchanged) are shared with ``base``."""
    if not _NAME.match(experiment or ""):
        raise ChainDefinitionError(
            f"Experiment name {experiment!r} is not a valid name. To fix this, use lower-case letters, digits, '_'.")
    if experiment == base.name:
        raise ChainDefinitionError(f"An experiment cannot have its base's name {base.name!r}.")
    if not isinstance(sets, Mapping):
        sets = parse_sets(base.definition, sets)
    else:
        for node_name in sets:
            base.definition.node(node_name)
    merged = {k: dict(v) for k, v in base.sets.items()}
    for node_name, params in sets.items():
        merged.setdefault(node_name, {}).update(params)
    definition = apply_sets(base.definition, sets)
    naming = (base.root_naming or base.naming).for_experiment(experiment)
    return plan_chain(definition, naming, name=experiment, base=base, sets=merged)


__all__ = ["ChainPlan", "Naming", "NodeInstance", "apply_sets", "clone", "parse_sets", "plan_chain"]
