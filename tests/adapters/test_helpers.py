"""The hygiene check itself: it must see every kind of leftover a stream could leave.

A check that cannot fail proves nothing. These plant each leftover by hand on a
small module and require :func:`assert_same_state` to name the module.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.adapters.helpers import assert_same_state, hook_count, module_state, wrap_nnsight


def small_model() -> nn.Module:
    return nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.ReLU(), nn.Linear(2, 2))).eval()


def test_sees_an_instance_forward():
    model = small_model()
    before = module_state(model)
    assert_same_state(before, module_state(model))
    inner = model[1][1]
    inner.forward = lambda x: x  # what a forward-patching adapter would leave
    with pytest.raises(AssertionError, match=r"\n1\.1: "):
        assert_same_state(before, module_state(model))
    del inner.forward
    assert_same_state(before, module_state(model))


def test_sees_a_hook_and_a_training_flag():
    model = small_model()
    before = module_state(model)
    handle = model[0].register_forward_pre_hook(lambda m, args: None)
    with pytest.raises(AssertionError, match=r"\n0: "):
        assert_same_state(before, module_state(model))
    handle.remove()
    model[1][0].train()
    with pytest.raises(AssertionError, match=r"\n1\.0: "):
        assert_same_state(before, module_state(model))


def test_sees_nnsight_controllers_that_hook_counts_miss():
    """nnsight 0.8 wraps modules through ``__dict__["forward"]``, invisible to hook counts."""
    model = small_model()
    hooks, before = hook_count(model), module_state(model)
    envoy = wrap_nnsight(model)
    assert hook_count(model) == hooks  # the old check saw nothing
    with pytest.raises(AssertionError, match="forward"):
        assert_same_state(before, module_state(model))
    wrapped = module_state(model)
    with envoy.trace(torch.ones(1, 2)):
        envoy[1][1].output.save()
    assert_same_state(wrapped, module_state(model))  # the controllers stay, unchanged
    controller = model[1][1].__dict__["forward"]
    model[1][1].__dict__["forward"] = type(controller)(model[1][1], controller.state)
    with pytest.raises(AssertionError, match=r"\n1\.1: "):
        assert_same_state(wrapped, module_state(model))
