"""Install Backend (issue 20, item 1): the real steps — venv, pip download, pip install, pre-flight —
against a local wheel folder, so no test touches the network."""

import json
import subprocess
import sys
import time

import pytest

from addon_support.fakes import FakeClock, FakeLauncher
from addon_support.package import ROOT, core
from addon_support.wheels import make_wheel, probe_wheelhouse

install = core("backend_install")


def plan_for(tmp_path, **overrides):
    requirements = probe_wheelhouse(tmp_path / "source")
    settings = dict(env_dir=tmp_path / "user" / "backend-env", wheel_dir=tmp_path / "user" / "wheels",
                    requirements=requirements, backend_root=ROOT, base_pythons=(sys.executable,),
                    log_file=tmp_path / "user" / "logs" / "install.log", wheel_source=tmp_path / "source",
                    gpu_probe=(sys.executable, "-c", "print('NVIDIA H200')"), platform="linux")
    settings.update(overrides)
    return install.InstallPlan(**settings)


def run(installer, timeout=180.0, until=None):
    seen = []
    end = time.monotonic() + timeout
    while not installer.final and time.monotonic() < end:
        installer.tick()
        step = installer.progress.step
        if not seen or seen[-1] != step:
            seen.append(step)
        if until is not None and until(installer):
            break
        time.sleep(0.02)
    return seen


def env_imports(python, module):
    return subprocess.run([str(python), "-c", f"import {module}; print({module}.VERSION)"],
                          capture_output=True, text=True).stdout.strip()


@pytest.mark.slow
def test_install_makes_a_verified_environment_from_a_wheel_folder(tmp_path):
    plan = plan_for(tmp_path)
    installer = install.BackendInstaller(plan)
    steps = run(installer)
    assert installer.progress.state == "done", installer.progress.text
    assert steps == ["python", "venv", "pip", "gpu", "download", "install", "verify"]
    assert installer.progress.torch == "cuda"  # the GPU probe printed a name
    assert install.installed_python(plan.env_dir) == str(plan.python)
    assert env_imports(plan.python, "stepstone_probe_b") == "2.0" and env_imports(plan.python, "stepstone_probe_a") == "1.0"
    record = install.install_record(plan.env_dir)
    assert record["torch"] == "cuda" and record["base_python"] == sys.executable and record["seconds"] > 0
    assert sorted(p.name for p in plan.wheel_dir.iterdir()) == ["stepstone_probe_a-1.0-py3-none-any.whl",
                                                                "stepstone_probe_b-2.0-py3-none-any.whl"]
    log = plan.log_file.read_text()
    assert "pip download" in log and "Successfully installed stepstone-probe-a-1.0 stepstone-probe-b-2.0" in log
    assert installer.progress.text.startswith("Backend installed in ")

    # Repair: the environment is made again, from the kept downloads alone (the source is gone).
    for wheel in (tmp_path / "source").iterdir():
        wheel.unlink()
    (plan.env_dir / "marker-of-the-old-env").write_text("x")
    repair = install.BackendInstaller(plan_for(tmp_path, repair=True, gpu_probe=None))
    steps = run(repair)
    assert repair.progress.state == "done", repair.progress.text
    assert steps == ["clear", "python", "venv", "pip", "download", "install", "verify"]
    assert not (plan.env_dir / "marker-of-the-old-env").exists()
    assert env_imports(plan.python, "stepstone_probe_b") == "2.0"

    removal = install.BackendRemoval(plan)
    run(removal)
    assert removal.progress.state == "done" and not plan.env_dir.exists() and not plan.wheel_dir.exists()
    assert install.installed_python(plan.env_dir) == ""


@pytest.mark.slow
def test_cancel_kills_the_step_and_the_next_install_resumes(tmp_path):
    plan = plan_for(tmp_path, gpu_probe=(sys.executable, "-c", "import time; time.sleep(60)"))
    first = install.BackendInstaller(plan)
    run(first, until=lambda i: i.progress.step == "gpu")
    handle = first._handle
    first.cancel()
    assert first.progress.state == "cancelled" and "resume" in first.progress.text
    end = time.monotonic() + 10
    while handle.poll() is None and time.monotonic() < end:
        time.sleep(0.02)
    assert handle.poll() is not None  # the hanging step was killed
    assert install.installed_python(plan.env_dir) == ""  # not verified, so not used
    second = install.BackendInstaller(plan_for(tmp_path, gpu_probe=None))
    steps = run(second)
    assert second.progress.state == "done", second.progress.text
    assert steps == ["pip", "download", "install", "verify"]  # the venv made before the cancel is reused


@pytest.mark.slow
def test_a_package_pip_cannot_find_fails_with_pips_reason_and_the_log(tmp_path):
    plan = plan_for(tmp_path, gpu_probe=None)
    plan.requirements.write_text("stepstone-probe-b==2.0\nstepstone-not-published==1.0\n")
    installer = install.BackendInstaller(plan)
    run(installer)
    text = installer.progress.text
    assert installer.progress.state == "failed" and installer.progress.step == "download"
    assert "No matching distribution found for stepstone-not-published==1.0" in text
    assert f"full log: {plan.log_file}" in text and text.endswith("Press Install Backend to resume")
    assert install.installed_python(plan.env_dir) == ""


def test_no_usable_python_is_said_with_the_fix(tmp_path):
    not_python = tmp_path / "python3.9"
    not_python.write_text("#!/bin/sh\necho 'STEPSTONE PYTHON 3.9'\n")
    not_python.chmod(0o755)
    installer = install.BackendInstaller(plan_for(tmp_path, base_pythons=(str(tmp_path / "missing"), str(not_python))))
    run(installer)
    assert installer.progress.state == "failed"
    assert "no Python 3.11 with venv was found" in installer.progress.text
    assert "install Python 3.11 from python.org" in installer.progress.text


def test_steps_progress_and_pip_output_parsing(tmp_path):
    """The whole step sequence on scripted processes, and what the progress bar shows."""
    launcher = FakeLauncher()
    plan = plan_for(tmp_path, wheel_source=None)
    installer = install.BackendInstaller(plan, launcher=launcher, clock=FakeClock())

    def finish(lines=(), code=0):
        launcher.last.pending += list(lines)
        launcher.last.code = code
        installer.tick()

    finish(["STEPSTONE PYTHON 3.11"])
    assert installer.progress.step == "venv" and launcher.last.argv[-3:] == ["venv", "--clear", str(plan.env_dir)]
    finish()
    assert installer.progress.step == "pip" and "pip>=24.1" in launcher.last.argv
    finish(code=1)  # an old pip that cannot be updated: no byte progress, still installs
    assert installer.progress.step == "gpu"
    finish(code=1)  # nvidia-smi failed: no NVIDIA GPU
    argv = launcher.last.argv
    assert installer.progress.step == "download" and installer.progress.torch == "cpu"
    assert argv[argv.index("--progress-bar") + 1] == "off"
    assert argv[argv.index("--index-url") + 1] == "https://download.pytorch.org/whl/cpu"
    launcher.last.pending += [
        "Collecting torch==2.15.0 (from -r requirements.txt (line 1))",
        "  Downloading https://download.pytorch.org/whl/cpu/torch-2.15.0%2Bcpu-cp311-cp311-linux_x86_64.whl (190.2 MB)",
        "Progress 95100000 of 190200000"]
    installer.tick()
    p = installer.progress
    assert p.package == "torch-2.15.0%2Bcpu-cp311-cp311-linux_x86_64.whl" and p.fraction == pytest.approx(0.5)
    assert p.text == "Downloading torch-2.15.0%2Bcpu-cp311-cp311-linux_x86_64.whl: 95 MB of 190 MB · 0 files, 0 kB ready"
    saved = make_wheel(tmp_path / "dl", "stepstone-probe-c", "1.0")
    finish([f"Saved {saved}", "Successfully downloaded torch"])
    assert installer.progress.files == 1 and installer.progress.bytes_saved == saved.stat().st_size
    assert installer.progress.step == "install" and "--no-index" in launcher.last.argv
    finish(["Installing collected packages: numpy, torch, pyzmq, trimesh"])
    assert installer.progress.step == "verify"
    plan.env_dir.mkdir(parents=True)
    finish([json.dumps({"ok": True, "python_ok": True, "missing": []})])
    assert installer.progress.state == "done" and installer.progress.fraction == 1.0
    assert install.install_record(plan.env_dir)["torch"] == "cpu"


def test_torch_comes_from_where_the_machine_needs_it():
    assert install.torch_index_args("linux", "cpu")[:2] == ["--index-url", "https://download.pytorch.org/whl/cpu"]
    assert install.torch_index_args("linux", "cuda") == []  # PyPI's Linux wheels are the CUDA build
    assert install.torch_index_args("win32", "cuda")[1].startswith("https://download.pytorch.org/whl/cu")
    assert install.torch_index_args("win32", "cpu") == [] and install.torch_index_args("darwin", "cpu") == []


def test_an_environment_that_fails_the_check_is_not_used_and_the_check_says_why(tmp_path):
    launcher = FakeLauncher()
    plan = plan_for(tmp_path, gpu_probe=None)
    plan.env_dir.mkdir(parents=True)
    (plan.env_dir / "bin").mkdir()
    (plan.env_dir / "bin" / "python").write_text("")  # an existing venv: pip, download, install, verify
    # the scripted pre-flight answers at once, exiting 1 with this report, as the real one does
    launcher.preflight_report = {"ok": False, "python_ok": True, "missing": ["torch"]}
    installer = install.BackendInstaller(plan, launcher=launcher, clock=FakeClock())
    for _ in ("pip", "download", "install"):
        launcher.last.code = 0
        installer.tick()
    assert installer.progress.step == "verify"
    installer.tick()
    assert installer.progress.state == "failed"
    assert "does not pass the pre-flight check: the backend Python" in installer.progress.text
    assert "lacks torch" in installer.progress.text and install.installed_python(plan.env_dir) == ""
