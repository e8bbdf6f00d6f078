"""``reward.precision=auto``: bf16 weights where the device runs them fast, fp32 elsewhere.

bf16 halves the reward model's memory and, on hardware with bf16 dot products, roughly
doubles its speed; on hardware without them every bf16 matmul is emulated and runs several
times slower than fp32 (measured: open_clip ViT-B-32 on an AVX2-only CPU, 0.7 frames/s in
bf16 against 5.5 in fp32). So the choice follows the hardware, and each reason names the
fact it rests on.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

AUTO = "auto"
BF16, FP32 = "bf16", "32"
#: x86 /proc/cpuinfo flags of bf16 dot-product instructions (AVX512-BF16, AMX-BF16).
X86_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
#: oneDNN ISA caps below its first bf16 dot-product ISA (AVX512_CORE_BF16): with one of
#: these in ONEDNN_MAX_CPU_ISA, bf16 matmuls are emulated even on a CPU that has them.
ONEDNN_CAPS_WITHOUT_BF16 = frozenset({
    "SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"})
#: torch.backends.cpu.get_cpu_capability() values on x86 whose bf16 kernels are emulated
#: (ATEN_CPU_CAPABILITY caps it, e.g. ATEN_CPU_CAPABILITY=avx2).
TORCH_X86_CAPS_WITHOUT_BF16 = frozenset({"DEFAULT", "NO AVX", "AVX", "AVX2"})
#: Where the choice is written down in a run's config.yaml (a comment line: the config's
#: own value is the resolved one, so the file loads and resumes as any other).
NOTE_PREFIX = "# reward.precision=auto chose "


@dataclass(frozen=True)
class PrecisionChoice:
    """What ``auto`` resolved to (a ``reward.precision`` value) and why."""

    value: str
    reason: str

    @property
    def label(self) -> str:
        return "32 (fp32)" if self.value == FP32 else self.value

    def line(self) -> str:
        """The one line a run prints about it."""
        return f"vlmrm: {self.note().removeprefix('# ')}"

    def note(self) -> str:
        """The comment line stored at the top of the run's config.yaml."""
        return f"{NOTE_PREFIX}{self.label}: {self.reason}"


@dataclass(frozen=True)
class CpuFacts:
    """What the CPU choice rests on, gathered once (tests pass their own)."""

    machine: str  # platform.machine(): x86_64, aarch64, arm64, ...
    cpuinfo: str | None  # /proc/cpuinfo, None where the OS has none
    torch_capability: str  # torch.backends.cpu.get_cpu_capability()
    #: torch would hand bf16 matmuls to oneDNN (built with it, and the CPU passes its check).
    torch_onednn_bf16: bool
    environ: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def here(cls) -> CpuFacts:
        import torch

        try:
            cpuinfo: str | None = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = None
        onednn = torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled
        check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
        onednn_bf16 = bool(onednn and check is not None and check())
        return cls(platform.machine(), cpuinfo, torch.backends.cpu.get_cpu_capability(),
                   onednn_bf16, dict(os.environ))


def cpu_flags(cpuinfo: str) -> set[str]:
    """The first processor's ISA flags (x86 ``flags``, Arm ``Features``)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def cpu_choice(facts: CpuFacts) -> PrecisionChoice:
    """bf16 on a CPU with bf16 dot products that torch and oneDNN are allowed to use."""
    x86 = facts.machine.lower() in ("x86_64", "amd64", "i686", "i386")
    capability = facts.torch_capability.upper()
    capped = _capped_by_environment(facts, x86, capability)
    if capped:
        return PrecisionChoice(FP32, capped)
    if facts.cpuinfo is None:
        return PrecisionChoice(FP32, "this CPU's instruction set cannot be read here (no "
                               "/proc/cpuinfo), so bf16 support is unknown")
    wanted = X86_BF16_FLAGS if x86 else ("bf16",)
    found = [f for f in wanted if f in cpu_flags(facts.cpuinfo)]
    if not found:
        return PrecisionChoice(FP32, f"this CPU has no native bf16 matmul (no "
                               f"{' or '.join(wanted)} in /proc/cpuinfo); bf16 would be "
                               "emulated, several times slower than fp32")
    if x86 and capability in TORCH_X86_CAPS_WITHOUT_BF16:
        return PrecisionChoice(FP32, f"the CPU has {found[0]}, but torch runs its kernels at "
                               f"{capability}, without bf16 instructions")
    if not facts.torch_onednn_bf16:
        return PrecisionChoice(FP32, f"the CPU has {found[0]}, but this torch build does not "
                               "run bf16 matmuls through oneDNN (torch.backends.mkldnn)")
    return PrecisionChoice(BF16, f"this CPU has native bf16 matmul ({', '.join(found)})")


def _capped_by_environment(facts: CpuFacts, x86: bool, capability: str) -> str | None:
    """Why an ISA cap the user set (oneDNN's or torch's) rules bf16 out, if one does."""
    for var in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        cap = facts.environ.get(var, "").strip().upper()
        if cap in ONEDNN_CAPS_WITHOUT_BF16:
            return (f"{var}={cap} keeps oneDNN below AVX512_CORE_BF16, so bf16 matmuls would "
                    "be emulated, slower than fp32")
    aten = facts.environ.get("ATEN_CPU_CAPABILITY")
    if x86 and aten and capability in TORCH_X86_CAPS_WITHOUT_BF16:
        return (f"ATEN_CPU_CAPABILITY={aten} keeps torch's kernels at {capability}, without "
                "bf16 instructions")
    return None


def cuda_choice(device) -> PrecisionChoice:
    import torch

    name = torch.cuda.get_device_name(device)
    major, minor = torch.cuda.get_device_capability(device)
    with torch.cuda.device(device):
        native = torch.cuda.is_bf16_supported(including_emulation=False)
    if native:
        return PrecisionChoice(BF16, f"{name} (compute capability {major}.{minor}) runs bf16 "
                               "natively")
    return PrecisionChoice(FP32, f"{name} (compute capability {major}.{minor}) has no native "
                           "bf16")


def choose_precision(device, cpu: CpuFacts | None = None) -> PrecisionChoice:
    """``reward.precision=auto`` on ``device`` (a torch device or its name)."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return cuda_choice(device)
    if device.type == "cpu":
        return cpu_choice(cpu if cpu is not None else CpuFacts.here())
    return PrecisionChoice(FP32, f"bf16 speed on {device.type} devices is not known to vlmrm")


def resolve(precision: str, device) -> str:
    """``precision`` itself, or what ``auto`` picks on ``device``."""
    return choose_precision(device).value if precision == AUTO else precision


def read_note(config_yaml: Path) -> str | None:
    """The choice's comment line in an existing run's config.yaml (kept on resume)."""
    try:
        lines = config_yaml.read_text().splitlines()
    except OSError:
        return None
    return next((line for line in lines if line.startswith(NOTE_PREFIX)), None)
