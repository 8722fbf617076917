"""KVM-or-TCG decision: /dev/kvm alone is not enough (kvm_pvm passes ioctls but cannot boot guests)."""
from __future__ import annotations

import pytest

from gldeploy.lab.host import decide_accel

VMX = {"fpu", "vmx"}


@pytest.mark.parametrize("kwargs, kvm, words", [
    (dict(dev_kvm=True, dev_usable=True, cpu_flags=VMX, modules={"kvm", "kvm_intel"}), True, "KVM available"),
    (dict(dev_kvm=True, dev_usable=True, cpu_flags={"svm"}, modules={"kvm", "kvm_amd"}), True, "KVM available"),
    (dict(dev_kvm=True, dev_usable=True, cpu_flags={"hypervisor"}, modules={"kvm", "kvm_pvm"}), False, "kvm_pvm"),
    (dict(dev_kvm=True, dev_usable=True, cpu_flags=VMX, modules={"kvm", "kvm_pvm"}), False, "kvm_pvm"),
    (dict(dev_kvm=False, dev_usable=False, cpu_flags=VMX, modules=set()), False, "does not exist"),
    (dict(dev_kvm=True, dev_usable=False, cpu_flags=VMX, modules={"kvm"}), False, "read-write"),
    (dict(dev_kvm=True, dev_usable=True, cpu_flags={"fpu"}, modules={"kvm"}), False, "no vmx/svm"),
])
def test_decision(kwargs: dict, kvm: bool, words: str) -> None:
    accel = decide_accel(**kwargs)
    assert accel.kvm is kvm
    assert words in accel.reason
    assert accel.driver == ("kvm" if kvm else "qemu")
    if not kvm:
        assert accel.reason.startswith("using TCG")


def test_overrides() -> None:
    good = dict(dev_kvm=True, dev_usable=True, cpu_flags=VMX, modules={"kvm"})
    assert decide_accel(**good, override="tcg").kvm is False
    forced = decide_accel(dev_kvm=False, dev_usable=False, cpu_flags=set(), modules=set(), override="kvm")
    assert forced.kvm is True and "despite" in forced.reason
