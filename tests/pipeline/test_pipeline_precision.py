"""CPU_BF16: bf16 where the CPU has it natively, fp32 elsewhere, forced either way; a parameter of every stage whose
result depends on it."""
from __future__ import annotations

import pytest

from pipeline import precision, stages
from pipeline.layout import Layout
from pipeline.settings import VariableError, Variables
from pipeline.stamps import stage_key

X86 = "processor\t: 0\nflags\t\t: fpu sse2 avx512f {extra}\nbugs\t\t: spectre\n\nprocessor\t: 1\nflags\t\t: fpu\n"


def test_cpu_flags_and_native_bf16(tmp_path):
    for extra, native in (("avx512_bf16 amx_tile", "avx512_bf16"), ("amx_bf16", "amx_bf16"), ("avx2", None)):
        info = tmp_path / "cpuinfo"
        info.write_text(X86.format(extra=extra))
        assert precision.native_bf16(precision.cpu_flags(info)) == native
    (tmp_path / "arm").write_text("processor\t: 0\nFeatures\t: fp asimd bf16\n")
    assert "bf16" in precision.cpu_flags(tmp_path / "arm") and precision.native_bf16({"bf16"}) is None
    assert precision.cpu_flags(tmp_path / "missing") == set()


def test_gpu_visible_from_device_nodes_and_cuda_visible_devices(tmp_path):
    assert not precision.gpu_visible(tmp_path, {})
    (tmp_path / "nvidia0").touch()
    assert precision.gpu_visible(tmp_path, {}) and precision.gpu_visible(tmp_path, {"CUDA_VISIBLE_DEVICES": "0"})
    assert not precision.gpu_visible(tmp_path, {"CUDA_VISIBLE_DEVICES": ""})
    assert not precision.gpu_visible(tmp_path, {"CUDA_VISIBLE_DEVICES": "-1"})


@pytest.fixture
def machine(monkeypatch):
    """Set what _detected finds: (gpu visible, native bf16 flag)."""
    def set_to(gpu: bool, flag: str | None):
        monkeypatch.setattr(precision, "_detected", lambda: (gpu, flag))
        precision._said.clear()
    return set_to


def test_cpu_dtype_detected_forced_and_said_once(machine, capsys):
    machine(False, "amx_bf16")
    assert precision.cpu_dtype(Variables()) == "bfloat16"
    assert precision.cpu_dtype(Variables()) == "bfloat16"
    assert capsys.readouterr().out == "precision: bf16 on the CPU (amx_bf16; CPU_BF16=0 for fp32)\n"
    assert precision.cpu_dtype(Variables({"CPU_BF16": "0"})) == "float32"
    machine(False, None)
    assert precision.cpu_dtype(Variables()) == "float32"
    assert "fp32 on the CPU (no avx512_bf16 or amx_bf16" in capsys.readouterr().out
    assert precision.cpu_dtype(Variables({"CPU_BF16": "1"})) == "bfloat16"
    machine(True, "amx_bf16")  # a GPU: the recipes' and the scorer's own dtypes, unless forced
    assert precision.cpu_dtype(Variables()) is None and precision.scorer_args(Variables()) == []
    assert precision.cpu_dtype(Variables({"CPU_BF16": "0"})) == "float32"
    with pytest.raises(VariableError, match="CPU_BF16 must be 0 or 1"):
        precision.cpu_dtype(Variables({"CPU_BF16": "yes"}))


def _stages(tmp_path, **variables):
    s = Variables({"RUN_DIR": str(tmp_path / "run"), **variables})
    lay = Layout.of(s)
    return {"a-tune": stages.atune_train(s, lay), "b-tune": stages.btune_train(s, lay), "score": stages.score(s, lay),
            "eval": stages.eval_model(s, lay, "a-tune", str(lay.pi_ref))}


def _key(stage):
    return stage_key(stage.params, {})


def test_the_dtype_reaches_every_command_and_is_a_parameter(tmp_path, machine):
    machine(False, "avx512_bf16")
    bf16, fp32, auto = (_stages(tmp_path, CPU_BF16="1"), _stages(tmp_path, CPU_BF16="0"), _stages(tmp_path))
    for name in ("a-tune", "b-tune"):
        words = bf16[name].command
        assert "use_cpu=true" in words and "bf16=true" in words, name
        assert "bf16=true" not in fp32[name].command and "use_cpu=true" not in fp32[name].command
    for name in ("score", "eval"):
        cmd = bf16[name].command
        assert cmd[cmd.index("--dtype") + 1] == "bfloat16", name
        assert fp32[name].command[fp32[name].command.index("--dtype") + 1] == "float32"
    for name in bf16:  # switching reruns each stage; the detected default is the forced bf16 here
        assert _key(bf16[name]) != _key(fp32[name]) and _key(auto[name]) == _key(bf16[name]), name
    # fp32 adds no parameter: runs made before CPU_BF16 existed stay up to date
    assert "dtype" not in fp32["score"].params and "dtype" not in fp32["eval"].params


def test_recipes_that_choose_their_own_precision_are_left_alone(tmp_path, machine):
    machine(False, "avx512_bf16")
    s = Variables({"CPU_BF16": "1"})
    assert precision.train_overrides(s, {"bf16": True}) == []
    assert precision.train_overrides(s, {"deepspeed": "recipes/deepspeed/ds_z2_config.json"}) == []
    assert precision.train_overrides(s, {"bf16": False}) == ["use_cpu=true", "bf16=true"]
    eight_b = _stages(tmp_path, CPU_BF16="1", MODEL="llama3.1-8b-instruct")
    assert "use_cpu=true" not in eight_b["a-tune"].command
