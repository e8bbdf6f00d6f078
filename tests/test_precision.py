"""reward.precision=auto: the choice on each kind of CPU (facts injected), the ISA caps a
user sets, and a real run that prints the choice, stores it in config.yaml and resumes
from the preset's own `auto`."""

from __future__ import annotations

import pytest
import yaml

from tests.helpers import CONFIGS, QUIET, fit_run
from vlmrm.config import load_config
from vlmrm.config.schema import RewardConfig
from vlmrm.errors import ConfigError
from vlmrm.precision import NOTE_PREFIX, CpuFacts, choose_precision, cpu_choice
from vlmrm.run.resume import plan_resume

# First lines of real /proc/cpuinfo "flags"/"Features" (trimmed).
SAPPHIRE_RAPIDS = ("flags\t\t: fpu sse sse2 avx avx2 avx512f avx512dq avx512bw avx512vl "
                   "avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8\n")
ZEN4 = "flags\t\t: fpu sse sse2 avx avx2 avx512f avx512dq avx512bw avx512vl avx512_bf16\n"
SKYLAKE_X = "flags\t\t: fpu sse sse2 avx avx2 avx512f avx512dq avx512bw avx512vl\n"
ZEN2 = "flags\t\t: fpu sse sse2 avx avx2 fma bmi2\n"
GRAVITON3 = "Features\t: fp asimd sve bf16 i8mm svebf16\n"
GRAVITON2 = "Features\t: fp asimd asimdhp asimddp\n"


def x86(cpuinfo: str | None, capability: str = "AVX512", onednn: bool = True,
        **environ: str) -> CpuFacts:
    return CpuFacts("x86_64", cpuinfo, capability, onednn, environ)


@pytest.mark.parametrize("facts, flag", [
    (x86(SAPPHIRE_RAPIDS), "avx512_bf16, amx_bf16"),
    (x86(ZEN4), "avx512_bf16"),
    (CpuFacts("aarch64", GRAVITON3, "SVE256", True), "bf16"),
    # caps above the first bf16 ISA leave it alone
    (x86(ZEN4, ONEDNN_MAX_CPU_ISA="AVX512_CORE_BF16"), "avx512_bf16"),
    (x86(SAPPHIRE_RAPIDS, ONEDNN_MAX_CPU_ISA="avx512_core_amx"), "avx512_bf16, amx_bf16"),
    (x86(ZEN4, ONEDNN_MAX_CPU_ISA="ALL", ATEN_CPU_CAPABILITY="avx512"), "avx512_bf16"),
], ids=["sapphire-rapids", "zen4", "graviton3", "onednn-cap-bf16", "onednn-cap-amx",
        "caps-that-allow-it"])
def test_native_bf16_cpus_get_bf16(facts, flag):
    choice = cpu_choice(facts)
    assert choice.value == "bf16"
    assert choice.reason == f"this CPU has native bf16 matmul ({flag})"


@pytest.mark.parametrize("facts, because", [
    (x86(ZEN2, "AVX2"), "no avx512_bf16 or amx_bf16 in /proc/cpuinfo"),
    (x86(SKYLAKE_X), "no avx512_bf16 or amx_bf16 in /proc/cpuinfo"),  # AVX-512, emulated bf16
    (CpuFacts("aarch64", GRAVITON2, "DEFAULT", True), "no bf16 in /proc/cpuinfo"),
    (x86(None), "no /proc/cpuinfo"),
    (x86(ZEN4, ONEDNN_MAX_CPU_ISA="AVX2"), "ONEDNN_MAX_CPU_ISA=AVX2 keeps oneDNN below"),
    (x86(ZEN4, DNNL_MAX_CPU_ISA="avx512_core"), "DNNL_MAX_CPU_ISA=AVX512_CORE keeps oneDNN"),
    (x86(ZEN4, "AVX2", ATEN_CPU_CAPABILITY="avx2"),
     "ATEN_CPU_CAPABILITY=avx2 keeps torch's kernels at AVX2"),
    (x86(ZEN4, "AVX2"), "the CPU has avx512_bf16, but torch runs its kernels at AVX2"),
    (x86(ZEN4, onednn=False), "does not run bf16 matmuls through oneDNN"),
], ids=["zen2", "skylake-x", "graviton2", "no-cpuinfo", "onednn-cap", "dnnl-cap", "aten-cap",
        "torch-avx2", "no-onednn"])
def test_other_cpus_get_fp32_and_say_why(facts, because):
    choice = cpu_choice(facts)
    assert choice.value == "32" and because in choice.reason
    assert choice.line() == f"vlmrm: reward.precision=auto chose 32 (fp32): {choice.reason}"


@pytest.mark.parametrize("environ, because", [
    ({"ONEDNN_MAX_CPU_ISA": "AVX2"}, "ONEDNN_MAX_CPU_ISA=AVX2"),
    ({"ATEN_CPU_CAPABILITY": "default"}, "ATEN_CPU_CAPABILITY=default keeps torch's kernels "
                                         "at DEFAULT"),
])
def test_caps_in_the_environment_reach_the_choice_through_torch(monkeypatch, environ, because):
    """The caps as a user sets them: read from os.environ, and torch itself (which reads
    ATEN_CPU_CAPABILITY when it loads) reporting the capped capability."""
    import subprocess
    import sys

    code = "from vlmrm.precision import choose_precision; print(choose_precision('cpu').line())"
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.startswith("vlmrm: reward.precision=auto chose 32 (fp32): ")
    assert because in out


def test_devices_other_than_cpu_and_cuda_get_fp32():
    assert choose_precision("meta").value == "32"


def test_auto_is_the_default_and_the_presets_value():
    assert RewardConfig().precision == "auto"
    assert load_config(CONFIGS / "cartpole.yaml").reward.precision == "auto"  # not set there
    for preset in sorted(CONFIGS.glob("humanoid_*.yaml")):
        assert yaml.safe_load(preset.read_text())["reward"]["precision"] == "auto", preset.name
    with pytest.raises(ConfigError, match=r"'auto', '32', 'bf16', '16'"):
        load_config(CONFIGS / "cartpole.yaml", ["reward.precision=fp8"])


def test_a_run_prints_stores_and_resumes_the_choice(tmp_path, monkeypatch, capsys):
    """A CPU capped below bf16 (as on CPUs without it): the run says fp32 and why, once;
    config.yaml holds the value and the reason; resuming with the preset's own `auto`
    keeps what the run chose."""
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    short = ["agent.learning_starts=32", "agent.eval_every=0"]
    run = fit_run(tmp_path, "quickstart.yaml", "agent.total_env_steps=64", *short)
    lines = [x for x in capsys.readouterr().out.splitlines() if "reward.precision" in x]
    assert lines == ["vlmrm: reward.precision=auto chose 32 (fp32): ONEDNN_MAX_CPU_ISA=AVX2 "
                     "keeps oneDNN below AVX512_CORE_BF16, so bf16 matmuls would be emulated, "
                     "slower than fp32"]
    text = (run / "config.yaml").read_text()
    assert text.splitlines()[0] == lines[0].replace("vlmrm: ", "# ", 1)
    assert text.startswith(NOTE_PREFIX) and yaml.safe_load(text)["reward"]["precision"] == "32"
    assert load_config(run / "config.yaml").reward.precision == "32"  # the file loads as is

    resume = plan_resume(str(run), str(CONFIGS / "quickstart.yaml"),
                         [*QUIET, *short, "agent.total_env_steps=96"])
    assert resume.cfg.reward.precision == "32"
