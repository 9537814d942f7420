"""Which chains use which node instances: the reference tracking behind ``rtml experiment list`` and ``stop``.

A JSON file (one per deployment; the local stack keeps it under ``.rtml/``) holds every registered chain's plan.
An instance (a node as it runs: its owner and name) is *in use* while any registered chain lists it; stopping a
chain stops only the instances no other chain uses. Every change is made under an exclusive file lock and written
atomically (a temporary file, then a rename), so two ``rtml`` commands never lose each other's entries and a crash
never leaves half a file.

Retry-safe: registering a plan that is already registered with the same fingerprints changes nothing; stopping is
two steps (:meth:`ExperimentRegistry.to_stop` says what only this chain uses, :meth:`ExperimentRegistry.forget`
drops the entry once that is stopped), so a stop that died half-way is completed by running it again.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from airflow_rtml.chain.clone import ChainPlan, clone
from airflow_rtml.exceptions import ChainError, ChainNotFound

_VERSION = 1


class ExperimentRegistry:
    """The registered chains (bases and experiments) of one deployment, in the JSON file ``path``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    # ------------------------------------------------------------------ reading
    def chains(self) -> dict[str, dict[str, Any]]:
        """Chain name → its registered plan (``ChainPlan.to_json()``)."""
        return self._read()["chains"]

    def get(self, name: str) -> dict[str, Any]:
        chains = self.chains()
        if name not in chains:
            raise ChainNotFound(f"No chain {name!r} is registered in {self.path}. Registered: {sorted(chains) or 'none'}.")
        return chains[name]

    def users(self) -> dict[str, list[str]]:
        """Instance key (``owner/node``) → the chains using it, sorted."""
        result: dict[str, list[str]] = {}
        for chain, plan in sorted(self.chains().items()):
            for inst in plan["instances"].values():
                result.setdefault(inst["key"], []).append(chain)
        return result

    def to_stop(self, name: str) -> list[dict[str, Any]]:
        """The instances of chain ``name`` that no other registered chain uses, downstream first (stop order).
        Refused for a chain that registered experiments were cloned from (they are rebuilt from it)."""
        plan = self.get(name)
        clones = sorted(n for n, e in self.chains().items() if e.get("base") == name)
        if clones:
            raise ChainError(f"Chain {name!r} is the base of {clones}. To fix this, stop those first "
                             f"(rtml experiment stop {clones[0]}).")
        users = self.users()
        mine = [plan["instances"][n] for n in plan["order"] if users.get(plan["instances"][n]["key"]) == [name]]
        return list(reversed(mine))

    def plan(self, name: str, builtin: Mapping[str, ChainPlan]) -> ChainPlan:
        """The plan of chain ``name``: one of ``builtin`` (the chains defined in code, by name), or a registered
        experiment rebuilt from its base and its sets. Raises :class:`~airflow_rtml.exceptions.ChainNotFound` for
        an unknown name, and :class:`~airflow_rtml.exceptions.ChainError` when the definition gives other
        instances today than were registered (a node's code or the base changed since the clone)."""
        if name in builtin:
            return builtin[name]
        registered = self.chains()
        if name not in registered or not isinstance(registered[name], dict):
            raise ChainNotFound(f"No chain {name!r}: built in are {sorted(builtin)}, registered are "
                                f"{sorted(registered) or 'none'}. To fix this, clone one: "
                                f"rtml experiment clone {next(iter(sorted(builtin)), 'BASE')} {name}")
        entry = registered[name]
        if entry.get("base") is None:
            raise ChainNotFound(f"Chain {name!r} is registered as a base, but no chain of that name is defined in "
                                f"code here (defined: {sorted(builtin)}).")
        plan = clone(self.plan(entry["base"], builtin), name, entry["sets"])
        if plan.to_json()["instances"] != entry["instances"]:
            raise ChainError(f"Chain {name!r} is registered with other nodes than its definition gives today (a "
                             f"node's code or its base changed since the clone). To fix this, stop it and clone it "
                             f"again: rtml experiment stop {name}; rtml experiment clone {entry['base']} {name} ...")
        return plan

    def experiments(self, builtin: Mapping[str, ChainPlan]) -> dict[str, ChainPlan | ChainError]:
        """Every registered experiment (a chain with a base) that derives from one of ``builtin`` → its plan, or
        the error that refuses it. One stale or broken entry never hides the others."""
        result: dict[str, ChainPlan | ChainError] = {}
        chains = self.chains()

        def derives_from_builtin(name: str) -> bool:
            seen: set[str] = set()
            while name not in builtin:
                entry = chains.get(name)
                if entry is None or entry.get("base") is None or name in seen:
                    return False
                seen.add(name)
                name = entry["base"]
            return True

        for name, entry in sorted(chains.items()):
            try:
                if entry.get("base") is None or not derives_from_builtin(name):
                    continue
                result[name] = self.plan(name, builtin)
            except ChainError as e:  # ChainNotFound too: this entry alone is refused
                result[name] = e
            except (KeyError, TypeError, AttributeError, ValueError) as e:  # a malformed entry: it alone
                result[name] = ChainError(
                    f"The registry entry of chain {name!r} in {self.path} is malformed ({type(e).__name__}: {e}). "
                    f"To fix this, stop it (rtml experiment stop {name}) or remove the entry from the file.")
        return result

    # ------------------------------------------------------------------ writing
    def register(self, plan: ChainPlan) -> bool:
        """Record ``plan``. Returns False when it is registered already with the same instances (a retry), True
        when written. Raises :class:`~airflow_rtml.exceptions.ChainError` when a chain of that name is registered
        with other instances (stop it first), or when its base is not registered."""
        with self._locked() as data:
            return self._add(data, plan)

    def _add(self, data: dict[str, Any], plan: ChainPlan) -> bool:
        """:meth:`register` inside an open transaction (``data``: the file's content, written when it ends)."""
        doc = plan.to_json()
        chains = data["chains"]
        old = chains.get(plan.name)
        if old is not None:
            if old["instances"] == doc["instances"]:
                return False
            raise ChainError(
                f"Chain {plan.name!r} is registered already with other nodes or settings. To fix this, pick "
                f"another experiment name, or stop it first (rtml experiment stop {plan.name}).")
        taken = {}
        for name, entry in chains.items():
            for inst in ((entry.get("instances") or {}) if isinstance(entry, dict) else {}).values():
                for phys in [inst["job_name"], *inst["outputs"].values()]:
                    if phys:
                        taken.setdefault(phys, inst["key"])
        for inst in doc["instances"].values():
            if inst["owner"] != plan.name:
                continue
            for phys in [inst["job_name"], *inst["outputs"].values()]:
                if phys and taken.get(phys, inst["key"]) != inst["key"]:
                    raise ChainError(
                        f"Chain {plan.name!r} would name {phys!r} for node {inst['key']!r}, which "
                        f"{taken[phys]!r} already uses (names join the experiment and the node with '-'). "
                        "To fix this, pick another experiment name.")
        if plan.base is not None and plan.base not in chains:
            raise ChainNotFound(
                f"Chain {plan.name!r} is cloned from {plan.base!r}, which is not registered in {self.path}. "
                f"Registered: {sorted(chains) or 'none'}.")
        chains[plan.name] = doc
        return True

    def clone(self, base: str, name: str, sets, builtin: Mapping[str, ChainPlan],
              check: Callable[[ChainPlan], Any] | None = None) -> tuple[ChainPlan, bool]:
        """Plan experiment ``name`` from chain ``base`` with ``sets`` (``NODE.PARAM=VALUE`` strings or a mapping)
        and record it; returns the plan and whether it was written (False: the same clone was registered already).
        A built-in base is recorded with its first clone, in the same transaction, so its instances are
        reference-tracked. ``check(plan)`` may refuse the plan (raise a ``ChainError``), e.g. when its jobs cannot
        be rendered. Every refusal (unknown chain, node or parameter; a name in use; the check) is raised before
        anything is written."""
        base_plan = self.plan(base, builtin)
        plan = clone(base_plan, name, sets)
        if check is not None:
            check(plan)
        with self._locked() as data:
            if base_plan.base is None and base_plan.name not in data["chains"]:
                self._add(data, base_plan)
            return plan, self._add(data, plan)

    def forget(self, name: str) -> None:
        """Drop chain ``name`` (after its :meth:`to_stop` instances were stopped). Forgetting an unknown chain is a
        no-op, so a retried stop completes."""
        with self._locked() as data:
            data["chains"].pop(name, None)

    # ------------------------------------------------------------------ file
    def _read(self) -> dict[str, Any]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return {"version": _VERSION, "chains": {}}
        try:
            data = json.loads(text)
        except ValueError as e:
            raise ChainError(f"The experiment registry {self.path} is not valid JSON ({e}). To fix this, restore it "
                             "from a backup or remove it (every chain must then be registered again).") from None
        if not isinstance(data, dict) or not isinstance(data.get("chains"), dict):
            raise ChainError(f"The experiment registry {self.path} has no 'chains' object: not a registry file.")
        return data

    @contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data = self._read()
            yield data
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
            os.replace(tmp, self.path)
