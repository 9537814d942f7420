"""A learning chain defined once in code, its experiments (clones sharing unchanged nodes) and their tracking.

Pure Python (stdlib only): definitions, fingerprints, clone plans and the registry import nothing from Airflow.
See ``docs/experiments.md``.
"""

from airflow_rtml.chain.clone import ChainPlan, Naming, NodeInstance, apply_sets, clone, parse_sets, plan_chain
from airflow_rtml.chain.model import ChainDefinition, DependencyKind, Edge, Node, NodeKind, describe
from airflow_rtml.chain.registry import ExperimentRegistry

__all__ = ["ChainDefinition", "ChainPlan", "DependencyKind", "Edge", "ExperimentRegistry", "Naming", "Node",
           "NodeInstance", "NodeKind", "apply_sets", "clone", "describe", "parse_sets", "plan_chain"]
