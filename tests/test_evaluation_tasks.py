"""Tests for the evaluation's method names: presets, classical declippers, posterior means."""

import pytest

from jaxrestore import sample
from jaxrestore.evaluation import tasks


def test_method_names_parse_into_a_base_and_a_number_of_draws():
    assert tasks.parse_method("rg+dc") == ("rg+dc", 1)
    assert tasks.parse_method("aspade") == ("aspade", 1)
    assert tasks.parse_method("degraded") == ("degraded", 1)
    assert tasks.parse_method("aspade_warm+mean4") == ("aspade_warm", 4)
    assert tasks.parse_method("rg_drho+dc+rp+mean12") == ("rg_drho+dc+rp", 12)
    for bad in ("rg+dc+mean1", "rg+dc+mean", "aspade+mean4", "degraded+mean2", "nonsense", ""):
        with pytest.raises(ValueError, match="unknown method"):
            tasks.parse_method(bad)


def test_declip_only_methods_are_left_out_of_bandwidth_extension():
    methods = ("degraded", "rg+dc", "aspade", "aspade_warm", "aspade_warm+mean4", "pigdm+sdc")
    assert tasks.methods_for(methods, "declip") == methods
    # SparseConsistency is plain DC on other operators; A-SPADE and its warm start need a Clip.
    assert tasks.methods_for(methods, "bwe") == ("degraded", "rg+dc", "pigdm+sdc")
    assert tasks.method_label("aspade_warm+mean4", "declip5") == "A-SPADE → RG + DC, mean of 4"
    assert tasks.method_label("aspade_dc+mean8", "declip5") == "A-SPADE → DC, 6 steps, mean of 8"
    assert tasks.method_label("degraded", "bwe3k") == "LPF"


def test_eval_config_refuses_unknown_methods_and_keeps_posterior_means():
    config = tasks.EvalConfig(methods=("degraded", "pigdm+dc+mean3"))
    assert config.methods_for("bwe3k") == ("degraded", "pigdm+dc+mean3")
    assert config.sampler_config("pigdm+dc+mean3") == sample.PRESETS["pigdm+dc"]
    with pytest.raises(ValueError, match="unknown method"):
        tasks.EvalConfig(methods=("degraded", "rg+dc+mean1"))
    assert {"aspade_warm+mean4", "aspade_dc+mean8"} <= set(tasks.DEFAULT_METHODS)
