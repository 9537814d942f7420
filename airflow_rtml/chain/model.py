"""A learning chain defined once in code: nodes, the datasets they read and write, and the edges between them.

A **node** is one step of the chain: a long-running Flink job (``stream``), or a per-window batch step
(``batch``, ``train``, ``evaluate``). It reads and writes **datasets** by logical name (``"samples"``,
``"user_features"``); the chain gives each dataset one physical name (a topic, a table). The **edges** follow from
the datasets: a node depends on the node that writes what it reads, and the edge's kind (one of the four dependency
kinds of the design: stream → stream, stream → batch, batch → stream, batch → batch) follows from the two nodes'
kinds.

Every node has a **fingerprint**: a hash of its kind, its code (the SQL file's bytes, or an artifact's identity),
its parameters and the fingerprints of what it reads. Two nodes with one fingerprint compute the same thing from the
same input, which is what makes a clone's unchanged upstream nodes *shared* (see :mod:`airflow_rtml.chain.clone`).

Pure Python (stdlib only): no Airflow import, so a chain can be checked, cloned and planned anywhere.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from types import MappingProxyType
from typing import Any

from airflow_rtml.exceptions import ChainDefinitionError, UnknownChainNode

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class NodeKind(str, Enum):
    """What a node is. Only ``stream`` nodes are long-running; the others run once per window."""

    STREAM = "stream"
    BATCH = "batch"
    TRAIN = "train"
    EVALUATE = "evaluate"

    @property
    def streaming(self) -> bool:
        return self is NodeKind.STREAM


class DependencyKind(str, Enum):
    """The four dependency kinds (``../shared/DESIGN.md``): what an edge waits for."""

    STREAM_TO_STREAM = "stream->stream"  # start when the upstream job runs; never run ahead of it (skew guard)
    STREAM_TO_BATCH = "stream->batch"  # run once the upstream stream has closed (and committed) the window
    BATCH_TO_STREAM = "batch->stream"  # (re)start the stream job after the batch output, from a defined position
    BATCH_TO_BATCH = "batch->batch"  # a plain task or Asset dependency

    @classmethod
    def between(cls, upstream: NodeKind, downstream: NodeKind) -> DependencyKind:
        return {
            (True, True): cls.STREAM_TO_STREAM, (True, False): cls.STREAM_TO_BATCH,
            (False, True): cls.BATCH_TO_STREAM, (False, False): cls.BATCH_TO_BATCH,
        }[(upstream.streaming, downstream.streaming)]


@dataclass(frozen=True)
class Node:
    """One step of a chain.

    :param name: the node's name in its chain (lower-case letters, digits, ``_``).
    :param kind: a :class:`NodeKind` (or its value).
    :param inputs: logical names of the datasets it reads.
    :param outputs: logical names of the datasets it writes (each dataset has one writer in a chain).
    :param code: what runs. A :class:`~pathlib.Path` (relative paths resolve against the chain's ``root``) is
        identified by its file's bytes, so editing the SQL changes the node; several paths (a job's SQL and the
        files it includes) by all of their bytes; a ``str`` is an identity as given (a Python callable's dotted
        path, a jar's coordinates with its version).
    :param params: the node's parameters, JSON values. A clone changes them with ``--set node.param=value``; a
        parameter's type is fixed by its value here.
    :param description: one line for listings.
    """

    name: str
    kind: NodeKind | str
    inputs: Sequence[str] = ()
    outputs: Sequence[str] = ()
    code: Path | str | Sequence[Path] | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "kind", NodeKind(self.kind))
        except ValueError:
            raise ChainDefinitionError(
                f"Node {self.name!r} has kind {self.kind!r}. To fix this, use one of "
                f"{[k.value for k in NodeKind]}.") from None
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))
        if isinstance(self.code, (list, tuple)):
            if not self.code or not all(isinstance(c, Path) for c in self.code):
                raise ChainDefinitionError(f"Node {self.name!r}: code= as a sequence must hold Paths (the files that "
                                           "make up the job), at least one.")
            object.__setattr__(self, "code", tuple(self.code))
        for what, names in (("node", [self.name]), ("dataset", [*self.inputs, *self.outputs]),
                            ("parameter", list(self.params))):
            for n in names:
                if not isinstance(n, str) or not _NAME.match(n):
                    raise ChainDefinitionError(
                        f"{what.capitalize()} name {n!r} (node {self.name!r}) is not a valid name. To fix this, use "
                        "lower-case letters, digits and '_', starting with a letter.")
        for key, value in self.params.items():
            try:
                json.dumps(value, allow_nan=False)
            except (TypeError, ValueError):
                raise ChainDefinitionError(
                    f"Parameter {self.name}.{key} = {value!r} is not a JSON value. To fix this, use a number, "
                    "string, bool, null, or a list/dict of them.") from None
        if set(self.inputs) & set(self.outputs):
            raise ChainDefinitionError(
                f"Node {self.name!r} reads and writes {sorted(set(self.inputs) & set(self.outputs))}: a cycle of one.")


@dataclass(frozen=True)
class Edge:
    """``downstream`` reads ``dataset``, which ``upstream`` writes."""

    upstream: str
    downstream: str
    dataset: str
    kind: DependencyKind


@dataclass(frozen=True)
class ChainDefinition:
    """A chain: its nodes and the external datasets it starts from. Checked when built (raises
    :class:`~airflow_rtml.exceptions.ChainDefinitionError` naming the problem and how to fix it).

    :param name: the chain's name (the base name its experiments refer to).
    :param nodes: its nodes, in any order (listings use a topological order, ties in definition order).
    :param sources: datasets the chain reads but no node writes (the raw logs).
    :param root: where relative ``Path`` codes are found (usually the folder of the job SQL files).
    """

    name: str
    nodes: Sequence[Node]
    sources: Sequence[str] = ()
    root: Path | None = None

    def __post_init__(self) -> None:
        if not _NAME.match(self.name or ""):
            raise ChainDefinitionError(
                f"Chain name {self.name!r} is not a valid name. To fix this, use lower-case letters, digits and '_'.")
        object.__setattr__(self, "nodes", tuple(self.nodes))
        object.__setattr__(self, "sources", tuple(self.sources))
        seen: set[str] = set()
        for node in self.nodes:
            if node.name in seen:
                raise ChainDefinitionError(f"Chain {self.name!r} defines node {node.name!r} twice.")
            seen.add(node.name)
        writers: dict[str, str] = {}
        for node in self.nodes:
            for out in node.outputs:
                if out in writers:
                    raise ChainDefinitionError(
                        f"Dataset {out!r} is written by nodes {writers[out]!r} and {node.name!r}. To fix this, give "
                        "each output its own dataset name (one writer per dataset).")
                if out in self.sources:
                    raise ChainDefinitionError(
                        f"Dataset {out!r} is a source of chain {self.name!r} and written by node {node.name!r}.")
                writers[out] = node.name
        for node in self.nodes:
            for dataset in node.inputs:
                if dataset not in writers and dataset not in self.sources:
                    raise ChainDefinitionError(
                        f"Node {node.name!r} reads {dataset!r}, which no node writes. To fix this, add the node "
                        f"that writes it, or declare it in sources= (known datasets: "
                        f"{sorted([*writers, *self.sources])}).")
        object.__setattr__(self, "_writers", MappingProxyType(writers))
        object.__setattr__(self, "_order", tuple(self._topological_order()))

    # ------------------------------------------------------------------ structure
    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise UnknownChainNode(
            f"Chain {self.name!r} has no node {name!r}. Its nodes: {[n.name for n in self.nodes]}.")

    def writer(self, dataset: str) -> str | None:
        """The node writing ``dataset``, or None for a source."""
        return self._writers.get(dataset)  # type: ignore[attr-defined]

    @property
    def order(self) -> tuple[str, ...]:
        """Node names, upstream first (ties in definition order): the order nodes are started in."""
        return self._order  # type: ignore[attr-defined]

    def upstream_of(self, name: str) -> list[str]:
        node = self.node(name)
        return [w for w in dict.fromkeys(self.writer(d) for d in node.inputs) if w is not None]

    def edges(self) -> list[Edge]:
        by_name = {n.name: n for n in self.nodes}
        return [Edge(up, name, dataset, DependencyKind.between(by_name[up].kind, by_name[name].kind))
                for name in self.order for dataset in by_name[name].inputs
                if (up := self.writer(dataset)) is not None]

    def downstream_closure(self, names: Iterable[str]) -> set[str]:
        """``names`` and every node that reads, directly or not, what they write."""
        result = {self.node(n).name for n in names}
        for name in self.order:  # upstream first: one pass suffices
            if any(up in result for up in self.upstream_of(name)):
                result.add(name)
        return result

    def _topological_order(self) -> list[str]:
        by_name = {n.name: n for n in self.nodes}
        ups = {n.name: [w for w in (self._writers.get(d) for d in n.inputs) if w is not None]  # type: ignore[attr-defined]
               for n in self.nodes}
        state: dict[str, int] = {}  # 1 = on the path, 2 = done
        order: list[str] = []

        def visit(name: str, path: list[str]) -> None:
            if state.get(name) == 2:
                return
            if state.get(name) == 1:
                cycle = list(reversed(path[path.index(name):] + [name]))
                raise ChainDefinitionError(
                    f"Chain {self.name!r} has a cycle: {' -> '.join(cycle)} (each writes what the next reads). "
                    "To fix this, break it: a feedback loop goes through a dataset of another chain, or a source.")
            state[name] = 1
            for up in ups[name]:
                visit(up, [*path, name])
            state[name] = 2
            order.append(name)

        for node in self.nodes:
            visit(node.name, [])
        assert len(order) == len(by_name)
        return order

    # ------------------------------------------------------------------ identity
    def fingerprints(self) -> dict[str, str]:
        """Node name → fingerprint (hex): kind, code, params and the fingerprints of its inputs' writers."""
        result: dict[str, str] = {}
        for name in self.order:
            node = self.node(name)
            inputs = [[d, result[w] if (w := self.writer(d)) else f"source:{d}"] for d in node.inputs]
            doc = {"kind": node.kind.value, "code": self._code_identity(node), "params": dict(node.params),
                   "inputs": sorted(inputs), "outputs": sorted(node.outputs)}
            result[name] = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
        return result

    def _code_identity(self, node: Node) -> str | None:
        if isinstance(node.code, (Path, tuple)):
            digest = hashlib.sha256()
            for code in node.code if isinstance(node.code, tuple) else (node.code,):
                path = code if code.is_absolute() or self.root is None else self.root / code
                try:
                    digest.update(hashlib.sha256(path.read_bytes()).digest())
                except OSError as e:
                    raise ChainDefinitionError(
                        f"Node {node.name!r}: its code file {path} cannot be read ({e.strerror}). To fix this, check "
                        "the path (relative paths resolve against the chain's root=).") from None
            return "sha256:" + digest.hexdigest()
        return node.code


def describe(chain: ChainDefinition) -> str:
    """A readable listing: nodes upstream first, with kinds, inputs and outputs."""
    lines = [f"chain {chain.name}"]
    for name in chain.order:
        n = chain.node(name)
        lines.append(f"  {name} ({n.kind.value}): {', '.join(n.inputs) or '-'} -> {', '.join(n.outputs) or '-'}")
    return "\n".join(lines)
