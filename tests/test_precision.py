"""The training precision follows the machine (flickr_retrieval.precision), is overridable, and is
recorded with every run; a tiny run trains in each precision."""

import numpy as np
import pytest
from flickr_retrieval import precision
from flickr_retrieval.config import RunConfig

ZEN3 = "model name\t: AMD EPYC 7B13 64-Core Processor\nflags\t\t: fpu sse2 avx avx2 fma bmi2\n"
SAPPHIRE = "model name\t: Intel(R) Xeon(R) Platinum 8481C\nflags\t\t: avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
GENOA = "model name\t: AMD EPYC 9B14\nflags\t\t: avx2 avx512f avx512_bf16\n"


@pytest.fixture(autouse=True)
def no_limits(monkeypatch):
    for name in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", precision.VARIABLE):
        monkeypatch.delenv(name, raising=False)


def test_a_cpu_without_bfloat16_instructions_trains_in_float32_without_measuring():
    cpu = precision.read_cpu(ZEN3)
    assert cpu.model == "AMD EPYC 7B13 64-Core Processor" and not cpu.native_bfloat16
    measured = []
    chosen, why = precision.choose(cpu, lambda: measured.append(1) or 9.0)
    assert chosen == "float32" and "emulated" in why and not measured


def test_a_cpu_with_bfloat16_instructions_trains_in_bfloat16_only_when_measured_faster():
    for info in (SAPPHIRE, GENOA):
        cpu = precision.read_cpu(info)
        assert cpu.native_bfloat16
        assert precision.choose(cpu, lambda: 1.6)[0] == "bfloat16"
        slow, why = precision.choose(cpu, lambda: 1.05)
        assert slow == "float32" and "only 1.05x" in why


def test_an_instruction_set_limit_counts_as_no_bfloat16(monkeypatch):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert not precision.read_cpu(SAPPHIRE).native_bfloat16
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    assert not precision.read_cpu(SAPPHIRE).native_bfloat16


def test_the_override_wins_and_is_validated(monkeypatch):
    monkeypatch.setenv(precision.VARIABLE, "float32")
    assert precision.decision() == ("float32", f"set by {precision.VARIABLE}=float32")
    assert (
        RunConfig().effective_precision == "float32"
        and RunConfig(precision="bfloat16").effective_precision == "bfloat16"
    )
    monkeypatch.setenv(precision.VARIABLE, "fp8")
    with pytest.raises(ValueError, match=precision.VARIABLE):
        precision.decision()


def test_the_machine_decision_is_measured_once_and_kept(monkeypatch, isolated_cache):
    calls = []
    monkeypatch.setattr(precision, "measured_speedup", lambda: calls.append(1) or 1.5)
    cpu = precision.read_cpu(SAPPHIRE)
    assert precision._measured_once(cpu) == 1.5 and precision._measured_once(cpu) == 1.5 and len(calls) == 1
    assert list(isolated_cache.glob("precision-*.json"))


def test_precision_is_not_part_of_what_a_run_trains():
    a, b = RunConfig(precision="float32"), RunConfig(precision="bfloat16")
    assert a.setting() == b.setting() and a.to_dict() != b.to_dict()


@pytest.mark.parametrize("arithmetic", ["float32", "bfloat16"])
def test_a_tiny_run_trains_in_each_precision_and_says_which(tiny_run, arithmetic, tmp_path):
    from flickr_retrieval.checkpoint import TrainedModel
    from flickr_retrieval.runs import run_key_parts
    from flickr_retrieval.train import train

    data, config, space, feats, _ = tiny_run
    config = config.replace(precision=arithmetic)
    trained = train(config, feats)
    assert trained.precision == arithmetic and np.isfinite(trained.history[-1]["loss"])
    trained.save(tmp_path / "m.pt")
    assert TrainedModel.load(tmp_path / "m.pt").precision == arithmetic
    assert run_key_parts(config, feats)["precision"] == arithmetic
    auto = config.replace(precision="auto")
    assert run_key_parts(auto, feats)["precision"] == precision.default_precision()
