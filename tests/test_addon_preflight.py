"""The pre-flight check: an interpreter that is not the backend's environment is refused in one
sentence, before any backend process starts and before any job is sent (issue 20, finding 2)."""

import subprocess
import sys
import time
from importlib import metadata

import pytest

from addon_support.fakes import FakeClock, FakeLauncher
from addon_support.package import ROOT, core
from backend import preflight as backend_preflight

preflight = core("preflight")
supervisor = core("supervisor")
interpreter_check = core("interpreter_check")
jobs = core("jobs")
link_mod = core("link")
State = supervisor.BackendState


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory):
    """A real Python 3.11 with none of the backend's packages: a fresh venv without pip."""
    env = tmp_path_factory.mktemp("bare") / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    return str(env / "bin" / "python")


def test_backend_preflight_reads_the_pins_and_compares_installed_versions(tmp_path):
    requirements = tmp_path / "requirements.txt"
    pytest_version = metadata.version("pytest")
    requirements.write_text(f"# a comment\npytest=={pytest_version}\n\nnumpy==0.0.1  # pinned elsewhere\n"
                            "stepstone-not-a-package==1.0\n")
    assert backend_preflight.pins(requirements) == [("pytest", pytest_version), ("numpy", "0.0.1"),
                                                    ("stepstone-not-a-package", "1.0")]
    report = backend_preflight.check(requirements)
    assert report["missing"] == ["stepstone-not-a-package"] and not report["ok"]
    assert report["other_versions"] == [["numpy", "0.0.1", metadata.version("numpy")]]
    requirements.write_text(f"pytest=={pytest_version}+cpu\n")  # a local build tag is the same release
    assert backend_preflight.check(requirements) | {"executable": ""} == {
        "python": report["python"], "executable": "", "python_ok": True, "python_wanted": "3.11",
        "missing": [], "other_versions": [], "ok": True}


def test_the_project_environment_passes_and_every_pin_is_checked():
    out = subprocess.run([sys.executable, "-m", "backend.preflight", "--json"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    report = preflight.parse(out.splitlines())
    assert report["ok"] and preflight.explain(report, sys.executable) is None
    names = [name for name, _ in backend_preflight.pins()]
    assert {"torch", "pyzmq", "numpy"} <= set(names)


def test_explain_names_the_interpreter_what_it_lacks_and_the_fix():
    text = preflight.explain({"ok": False, "python_ok": True, "missing": ["torch", "pyzmq"]}, "/x/python")
    assert text == ("the backend Python /x/python lacks torch and pyzmq: press Install Backend in "
                    "Preferences → Add-ons → Stepstone, or set Backend Python there to an environment that has them")
    many = preflight.explain({"ok": False, "python_ok": True, "missing": list("abcdef")}, "/x/python")
    assert "lacks a, b, c and 3 more:" in many
    old = preflight.explain({"ok": False, "python_ok": False, "python": "3.9.2", "missing": []}, "/y/python")
    assert "is Python 3.9.2, and the backend needs Python 3.11" in old and "Install Backend" in old


def _wait(predicate, timeout=20.0):
    end = time.monotonic() + timeout
    while not predicate() and time.monotonic() < end:
        time.sleep(0.02)
    return predicate()


class RecordingLauncher(supervisor.SubprocessLauncher):
    def __init__(self):
        self.argvs = []

    def launch(self, argv, cwd, env, log_file=None):
        self.argvs.append(argv)
        return super().launch(argv, cwd, env, log_file)


def test_a_wrong_interpreter_never_starts_the_backend_and_the_job_gets_the_sentence(bare_python):
    """Before: `backend serve` was launched, died with a traceback, and the job failed with
    '...odule> import zmqModuleNotFoundError:'."""
    launcher = RecordingLauncher()
    tracker = jobs.JobTracker()
    link = link_mod.BackendLink(link_mod.LinkSettings(mode="local", python=bare_python, backend_root=ROOT),
                                tracker, launcher=launcher)
    job = tracker.add(jobs.JobSpec("generate", prompt="a chair"), "a chair")
    assert link.submit(job) == []
    assert link.status().text == "checking the backend Python…"
    events = []
    assert _wait(lambda: events.extend(link.tick()) or job.final)
    assert all("serve" not in argv for argv in launcher.argvs), launcher.argvs
    assert job.error_code == "BACKEND_UNAVAILABLE"
    assert job.error_message.startswith(f"the backend Python {bare_python} lacks torch, torchvision, ")
    assert job.error_message.endswith("or set Backend Python there to an environment that has them")
    assert "\n" not in job.error_message
    status = link.status()
    assert status.state == "failed" and bare_python in status.text and "Install Backend" in status.text
    assert any(e.kind == "report" and "lacks torch" in e.text for e in events)


def test_the_check_button_runs_the_same_preflight(bare_python):
    check = interpreter_check.InterpreterCheck(bare_python, ROOT)
    assert _wait(lambda: check.poll() is not None)
    assert not check.result.ok
    assert check.result.summary == preflight.explain(check.result.info, bare_python)


def test_a_passed_check_is_not_repeated_for_restarts_and_a_failed_one_is():
    clock = FakeClock()
    launcher = FakeLauncher()
    config = supervisor.LocalBackendConfig(python=sys.executable, backend_root=ROOT, backoff_s=0.1)
    sup = supervisor.BackendSupervisor(config, launcher, clock)
    launcher.preflight_report = {"ok": False, "python_ok": True, "missing": ["torch"]}
    sup.start()
    assert sup.state == State.GAVE_UP and launcher.processes == [] and "lacks torch" in sup.problem
    assert [e.kind for e in sup.tick()] == ["gave_up"]  # reported on the next tick, once
    assert sup.tick() == []
    launcher.preflight_report = {"ok": True, "python_ok": True, "missing": []}
    sup.start()  # e.g. after Install Backend: checked again
    assert len(launcher.preflights) == 2 and sup.state == State.STARTING
    launcher.last.say_ready()
    sup.tick()
    launcher.last.exit(1, "boom")
    sup.tick()
    clock.advance(1)
    sup.tick()
    assert sup.state == State.STARTING and len(launcher.processes) == 2 and len(launcher.preflights) == 2


def test_a_preflight_that_does_not_answer_times_out_and_stop_ends_it():
    clock = FakeClock()
    launcher = FakeLauncher()
    launcher.preflight_answers = False
    config = supervisor.LocalBackendConfig(python=sys.executable, backend_root=ROOT, preflight_timeout_s=5)
    sup = supervisor.BackendSupervisor(config, launcher, clock)
    sup.start()
    assert sup.state == State.CHECKING and sup.tick() == []
    clock.advance(6)
    events = sup.tick()
    assert [e.kind for e in events] == ["gave_up"] and "did not answer the pre-flight check within 5 s" in events[0].text
    assert launcher.preflights[0].killed and launcher.processes == []
    sup.start()
    sup.stop()
    assert launcher.preflights[1].killed and sup.state == State.STOPPED
    launcher.preflight_answers, launcher.preflight_report, launcher.preflight_exit = True, None, 1
    sup.start()
    assert sup.state == State.GAVE_UP and "could not run the pre-flight check (exit code 1" in sup.problem
