"""What the benchmarks say about the machine they ran on (shared by the peer
harness, tools/bench/peers, and the zoo twins, tools/bench/zoo)."""
import json
import os
import platform


def cpu_model():
    """The CPU's model name from /proc/cpuinfo (platform.processor() elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def isa():
    """The widest x86 vector extension the CPU reports (what kiln's JIT targets here): AVX-512, AVX2 or SSE."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "SSE"
    except OSError:
        pass
    return platform.machine() or "unknown"


def write_report(out, markdown, **fields):
    """Writes OUT.md (the table people read) and OUT.json (the machine, its ISA
    and `fields`, for scripts), making OUT's folder."""
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out + ".md", "w") as f:
        f.write(markdown)
    with open(out + ".json", "w") as f:
        json.dump({"machine": cpu_model(), "isa": isa(), **fields}, f, indent=1)
