"""docs/reference.md stays generated, and every argument of every public operator, sensor and trigger is
documented: a ``:param:`` line per argument (its own, those its ``**kwargs`` pass to an airflow-rtml base, and
for sensors ``BaseSensorOperator``'s), no ``:param:`` for an argument that does not exist, and a "Templated
fields:" sentence that lists exactly ``template_fields``."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "gen_reference.py"


@pytest.fixture(scope="module")
def gen():
    spec = importlib.util.spec_from_file_location("gen_reference", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def test_the_reference_page_is_what_the_generator_writes(gen):
    page = (REPO / "docs" / "reference.md").read_text(encoding="utf-8")
    assert page == gen.render(), (
        "docs/reference.md is stale (a docstring or signature changed). To fix this, run "
        ".venv/bin/python scripts/gen_reference.py and commit the page."
    )


def test_every_argument_has_a_param_line_and_the_templated_fields_are_listed(gen):
    assert gen.problems() == []


def test_the_reference_covers_every_public_class(gen):
    names = {cls.__qualname__ for _, cls in gen.public_classes()}
    assert {"FlinkSubmitJobOperator", "FlinkStopJobOperator", "StreamSkewCheckOperator", "FlinkJobStateSensor",
            "StreamWatermarkSensor", "StreamWindowSensor", "FlinkJobStateTrigger", "FlinkSavepointTrigger",
            "FlinkWatermarkTrigger", "FlinkWindowEventTrigger", "KafkaWatermarkTrigger"} <= names
    window_sensor = next(c for _, c in gen.public_classes() if c.__name__ == "StreamWindowSensor")
    sensor = gen.describe_class("Sensors", window_sensor)
    args = [p.name for p in sensor.params]
    # its own, then StreamWatermarkSensor's (through **kwargs), then BaseSensorOperator's
    assert args[:2] == ["asset", "window"] and "job_name" in args and "soft_fail" in args and "never_fail" in args


def test_a_missing_param_line_is_reported(gen):
    class Probe:  # stands in for a class whose docstring lost a line
        """Probe.

        :param a: documented.
        """

    doc = gen.ClassDoc(Probe, "Operators", [gen.Param("a", "int", "1", False, "documented."),
                                            gen.Param("b", "int", "2", False, None)])
    assert gen.problems([doc]) == ["Probe: argument 'b' has no ':param b:' line"]


def test_param_lines_and_their_continuations_are_read(gen):
    doc = "Summary.\n\n:param a: first\n    continued.\n:param b: second.\nOther prose."
    assert gen.documented_params(doc) == {"a": "first continued.", "b": "second."}
    assert gen.listed_templated_fields("Templated fields: ``x``, ``y``. A ``.sql`` file.") == ["x", "y"]
    assert gen.to_markdown(":class:`~a.b.C` and ``x | y``") == "`C` and `x \\| y`"
