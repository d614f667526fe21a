"""tools/gpu_check.py, the one-call GPU check, kept from rotting while no GPU is lent.

The dry run (what CI runs here) checks every path, the test selection and both
benchmarks and sanitizer cases on the CPU; the pieces that only the GPU run
uses (the time limit per step, the sanitizer plumbing and verdicts, the
parsing behind the summary) are tested one by one.
"""
import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import gpu_check  # noqa: E402


def test_dry_run_passes_and_writes_a_summary(tmp_path):
    proc = subprocess.run([sys.executable, "tools/gpu_check.py", "--dry-run", "--out", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = (tmp_path / "summary.txt").read_text()
    assert summary.rstrip().endswith("result: PASS")
    for name in ("env", "build", "tests", "sanitizers", "bench-loss", "bench-decode", "bench-train"):
        assert any(line.startswith(name + " ") and " ok " in line for line in summary.splitlines()), (name, summary)
    # The GPU selection is not empty and holds the loss, decoding and beam CUDA cases.
    tests_log = (tmp_path / "tests.log").read_text()
    for case in ("test_ctc_loss_cuda.py::test_multi_warp_blocks_are_right_and_bit_identical",
                 "test_ctc_loss_cuda.py::test_no_host_sync_without_validation",
                 "test_ctc_loss_cuda.py::test_cuda_graph_capture_forward_and_backward",
                 "test_ctc_loss_cuda.py::test_targets_on_another_gpu_are_an_error",
                 "test_beam_search.py::test_exact_top_k_equals_brute_force[cuda",
                 "test_decode.py::", "test_ctc_loss.py::"):
        assert case in tests_log, case
    assert "[cpu-" not in tests_log and "[cpu]" not in tests_log
    # The device tool brings back at most 8 plain files.
    files = list(tmp_path.iterdir())
    assert len(files) <= 8 and all(f.is_file() for f in files)


def test_children_import_the_ctcx_each_mode_means(tmp_path):
    """The GPU run builds in place, so its scripts (tools/, benchmarks/) must
    see the tree; the dry run checks the installed ctcx, which the tree's own
    ctcx/ must not shadow."""
    real = gpu_check.Run(tmp_path, budget=60, dry_run=False)
    assert real.env["PYTHONPATH"].split(os.pathsep)[0] == str(ROOT) and "PYTHONSAFEPATH" not in real.env
    dry = gpu_check.Run(tmp_path, budget=60, dry_run=True)
    assert dry.env["PYTHONSAFEPATH"] == "1"


def test_a_hanging_step_is_killed_at_its_limit(tmp_path):
    run = gpu_check.Run(tmp_path, budget=60, dry_run=True)
    start = time.monotonic()
    rc = run.sh(["bash", "-c", "sleep 30 & sleep 30"], "x.log", limit=1)
    assert rc is None and time.monotonic() - start < 10
    assert "KILLED after 1 s" in (tmp_path / "x.log").read_text()


def test_the_budget_caps_every_step(tmp_path):
    run = gpu_check.Run(tmp_path, budget=4, dry_run=True)  # less than the 5 s kept for the summary
    assert run.sh(["true"], "x.log", limit=100) is None
    assert "time budget is spent" in (tmp_path / "x.log").read_text()


def test_cuda_version_checks():
    assert gpu_check.cuda_release("Cuda compilation tools, release 13.0, V13.0.88") == "13.0"
    assert gpu_check.version_mismatch("13.0", "13.0") is None
    assert gpu_check.version_mismatch("13.0", "13.1") is None  # a minor version is compatible
    assert "CUDA 12.8" in gpu_check.version_mismatch("13.0", "12.8")
    assert "no CUDA" in gpu_check.version_mismatch(None, "13.0")
    assert gpu_check.version_mismatch("13.0", None) is not None


def test_pytest_counts():
    assert gpu_check.pytest_counts("...\n3 failed, 120 passed, 4 skipped, 300 deselected in 50.1s\n") == {
        "failed": 3, "passed": 120, "skipped": 4, "deselected": 300}
    assert gpu_check.pytest_counts("370/591 tests collected (221 deselected) in 2.0s")["selected"] == 370
    assert gpu_check.pytest_counts("12 tests collected in 0.1s")["selected"] == 12
    assert gpu_check.pytest_counts("nothing here") == {}


@pytest.mark.parametrize("text, rc, verdict", [
    ("========= ERROR SUMMARY: 0 errors\n", 0, "clean (ERROR SUMMARY: 0 errors)"),
    ("========= RACECHECK SUMMARY: 2 hazards displayed (2 errors, 0 warnings)\n", 99,
     "FINDINGS: RACECHECK SUMMARY: 2 hazards displayed (2 errors, 0 warnings)"),
    ("========= Error: Device not supported\n", 1, "unavailable"),
    ("Traceback ...\n========= ERROR SUMMARY: 0 errors\n", 1, "FAILED (exit 1)"),
    ("", None, "TIMEOUT"),
])
def test_sanitizer_verdicts(text, rc, verdict):
    assert gpu_check.sanitizer_verdict(text, rc).startswith(verdict)


def fake_tool(path: Path, body: str) -> None:
    path.write_text("#!/usr/bin/env bash\n" + textwrap.dedent(body))
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_sanitizer_step_runs_every_tool_on_every_case(tmp_path, monkeypatch):
    """With a stand-in compute-sanitizer that records its arguments: four tools
    times three cases (loss, beam, align), ctcx's kernels filtered, torch's
    caching allocator off, and a finding in one run fails the step."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    fake_tool(bin_dir / "compute-sanitizer", f"""\
        if [ "$1" = --help ]; then echo "  --kernel-name arg"; exit 0; fi
        echo "$PYTORCH_NO_CUDA_MEMORY_CACHING $*" >> {calls}
        if [ "$2" = racecheck ] && [ "${{@: -1}}" = beam ]; then
            echo "========= RACECHECK SUMMARY: 1 hazard displayed (1 error, 0 warnings)"; exit 99
        fi
        echo "========= ERROR SUMMARY: 0 errors"
        """)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    out = tmp_path / "out"
    out.mkdir()
    run = gpu_check.Run(out, budget=120, dry_run=False)
    run.built = True
    run.env["PATH"] = os.environ["PATH"]
    status, detail = gpu_check.step_sanitizers(run, limit=60)
    lines = calls.read_text().splitlines()
    assert gpu_check.SANITIZER_CASES == ["loss", "beam", "align"] and len(lines) == 4 * 3
    for tool in gpu_check.SANITIZER_TOOLS:
        for case in gpu_check.SANITIZER_CASES:
            assert any(f"--tool {tool} --error-exitcode 99 --kernel-name kns=ctcx " in ln
                       and ln.endswith(f"tools/sanitize_case.py {case}") for ln in lines), (tool, case)
    assert all(ln.startswith("1 ") for ln in lines)
    assert status == "FAILED"
    assert "racecheck/beam: FINDINGS" in detail and "memcheck/loss: clean" in detail


def test_summary_keeps_the_benchmark_figures(tmp_path):
    (tmp_path / "bench_ctc_loss.log").write_text(textwrap.dedent("""\
        device=cuda threads=16 torch=2.11.0 dtype=float32 reduction=mean repeats=3 configs=[...]
        GPU: NVIDIA H200, cuDNN 91000
                   T,N,C,L   mode    peer ms   ctcx ms  speedup
            150,32,5000,20     op      1.000     0.250    4.00x
                               peak memory above the inputs: log_softmax + native 300.0 MiB, ...
                               bandwidth: ctc_loss_with_logits fwd+bwd 1.000 ms moves ...
        """))
    run = gpu_check.Run(tmp_path, budget=60, dry_run=False)
    run.steps.append({"name": "bench-loss", "status": "ok", "detail": "", "seconds": 3.0})
    text = gpu_check.write_summary(run)
    assert "150,32,5000,20     op      1.000     0.250    4.00x" in text
    assert "peak memory above the inputs" in text and "bandwidth: ctc_loss_with_logits" in text
    assert "GPU: NVIDIA H200" in text and text.rstrip().endswith("result: PASS")
