"""The CUDA sources compile with this machine's nvcc (no GPU needed; see tools/check_cuda_compile.py)."""
import subprocess
import sys
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parent.parent / "tools" / "check_cuda_compile.py"


@pytest.mark.slow
def test_cuda_sources_compile():
    proc = subprocess.run([sys.executable, str(TOOL), "--jobs", "2"], capture_output=True, text=True,
                          timeout=900)
    if proc.returncode == 0 and "nvcc not found" in proc.stdout:
        pytest.skip("nvcc not installed")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "all CUDA sources compile" in proc.stdout
