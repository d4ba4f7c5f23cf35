"""Backend supervision: start, ready line, restart with back-off, giving up, stopping; the
interpreter check; and one real child process through the real launcher."""

import sys
import textwrap
import time

import pytest

from addon_support.fakes import FakeClock, FakeLauncher
from addon_support.package import ROOT, core

supervisor = core("supervisor")
interpreter_check = core("interpreter_check")
State = supervisor.BackendState


def make(tmp_path=None, **overrides):
    clock = FakeClock()
    launcher = FakeLauncher()
    config = supervisor.LocalBackendConfig(python=sys.executable, backend_root=ROOT, **overrides)
    return supervisor.BackendSupervisor(config, launcher, clock), launcher, clock


def test_start_runs_the_backend_serve_command_and_waits_for_ready():
    sup, launcher, clock = make(device="cpu")
    sup.start()
    argv, cwd, env = launcher.calls[0]
    assert argv[1:] == ["-m", "backend", "serve", "--host", "127.0.0.1", "--port", "0", "--device", "cpu",
                        "--exit-on-stdin-eof"]
    assert cwd == ROOT and env["PYTHONPATH"] == str(ROOT) and "PYTHONHOME" not in env
    assert sup.state == State.STARTING and sup.address is None
    assert sup.tick() == []
    launcher.last.pending.append("some log line")
    launcher.last.say_ready(6123)
    events = sup.tick()
    assert [(e.kind, e.address) for e in events] == [("ready", "tcp://127.0.0.1:6123")]
    assert sup.state == State.READY and sup.address == "tcp://127.0.0.1:6123"


def test_death_restarts_with_doubling_backoff_then_gives_up():
    sup, launcher, clock = make(max_restarts=2, backoff_s=1.0)
    sup.start()
    launcher.last.say_ready()
    sup.tick()
    delays = []
    for attempt in range(3):
        launcher.last.exit(1, "Traceback ...\nRuntimeError: boom")
        events = sup.tick()
        assert events[0].kind == "died" and "exited with code 1" in events[0].text and "boom" in events[0].text
        if attempt == 2:
            assert events[-1].kind == "gave_up" and "3 times" in events[-1].text
            assert sup.state == State.GAVE_UP and "boom" in sup.problem
            break
        assert sup.state == State.BACKOFF
        delays.append(sup.next_start - clock())
        clock.advance(delays[-1] - 0.01)
        sup.tick()
        assert len(launcher.processes) == attempt + 1  # not yet
        clock.advance(0.02)
        sup.tick()
        assert len(launcher.processes) == attempt + 2 and sup.state == State.STARTING
        launcher.last.say_ready()
        sup.tick()
    assert delays == pytest.approx([1.0, 2.0])
    # a user's explicit start resets the budget
    sup.start()
    assert sup.state == State.STARTING and sup.restarts == 0 and len(launcher.processes) == 4


def test_generation_increases_with_each_instance():
    sup, launcher, clock = make(backoff_s=0.5)
    sup.start()
    first = sup.generation
    launcher.last.say_ready()
    sup.tick()
    launcher.last.exit(-9)
    events = sup.tick()
    assert events[0].generation == first and "killed by signal 9" in events[0].text
    clock.advance(1)
    sup.tick()
    assert sup.generation == first + 1


def test_start_timeout_kills_and_gives_up():
    sup, launcher, clock = make(start_timeout_s=10)
    sup.start()
    clock.advance(11)
    events = sup.tick()
    assert launcher.last.killed and events[0].kind == "died" and "did not start within 10 s" in events[0].text
    assert events[-1].kind == "gave_up" and sup.state == State.GAVE_UP


def test_a_backend_that_dies_before_listening_is_not_restarted():
    sup, launcher, clock = make()
    sup.start()
    launcher.last.exit(1, "ModuleNotFoundError: No module named 'torch'")
    events = sup.tick()
    assert [e.kind for e in events] == ["died", "gave_up"]
    assert "No module named 'torch'" in events[0].text                 # the details, for the message list
    # the status line: one sentence with the interpreter, the module and the fix, no traceback
    assert sup.problem == events[1].text and "\n" not in sup.problem and "Traceback" not in sup.problem
    assert f"{sup.config.python} has no module 'torch'" in sup.problem and "Install Backend" in sup.problem
    clock.advance(100)
    assert sup.tick() == [] and len(launcher.processes) == 1


def test_stable_run_resets_the_restart_count():
    sup, launcher, clock = make(stable_after_s=60, backoff_s=1)
    sup.start()
    launcher.last.say_ready()
    sup.tick()
    launcher.last.exit(1)
    sup.tick()
    clock.advance(2)
    sup.tick()
    launcher.last.say_ready()
    sup.tick()
    assert sup.restarts == 1
    clock.advance(61)
    sup.tick()
    assert sup.restarts == 0


def test_stop_terminates_then_kills_after_the_timeout():
    sup, launcher, clock = make(stop_timeout_s=2)
    sup.start()
    process = launcher.last
    sup.stop()
    assert process.terminated and sup.state == State.STOPPING
    clock.advance(3)
    sup.tick()
    assert process.killed
    events = sup.tick()
    assert events[0].kind == "stopped" and sup.state == State.STOPPED
    assert sup.tick() == []  # an expected exit is not a death and is not restarted


def test_unresponsive_backend_is_killed_and_restarted():
    sup, launcher, clock = make()
    sup.start()
    launcher.last.say_ready()
    sup.tick()
    events = sup.restart_unresponsive("silent for 30 s")
    assert launcher.processes[0].killed and events[0].kind == "died" and sup.state == State.BACKOFF


def test_missing_interpreter_is_a_readable_error(tmp_path):
    config = supervisor.LocalBackendConfig(python="", backend_root=ROOT)
    with pytest.raises(supervisor.SupervisorError, match="no backend environment yet: press Install Backend"):
        supervisor.BackendSupervisor(config, FakeLauncher()).start()
    config = supervisor.LocalBackendConfig(python=str(tmp_path / "nope"), backend_root=ROOT)
    with pytest.raises(supervisor.SupervisorError, match="does not exist"):
        supervisor.BackendSupervisor(config, FakeLauncher()).start()
    config = supervisor.LocalBackendConfig(python=sys.executable, backend_root=tmp_path)
    with pytest.raises(supervisor.SupervisorError, match="no backend package"):
        supervisor.BackendSupervisor(config, FakeLauncher()).start()


def test_default_backend_python_finds_the_project_venv(tmp_path):
    assert supervisor.default_backend_python(tmp_path) == ""
    assert supervisor.default_backend_python(ROOT).endswith("python")


def test_real_child_process_ready_and_killed(tmp_path):
    """The real launcher: a stand-in 'backend' package prints the ready line, then is killed."""
    (tmp_path / "backend").mkdir()
    (tmp_path / "backend" / "__init__.py").write_text("")
    (tmp_path / "backend" / "__main__.py").write_text(textwrap.dedent("""
        import sys, time
        print("loading", flush=True)
        print("STEPSTONE READY tcp://127.0.0.1:1234", flush=True)
        print("a warning on stderr", file=sys.stderr, flush=True)
        time.sleep(60)
    """))
    log = tmp_path / "logs" / "backend.log"
    config = supervisor.LocalBackendConfig(python=sys.executable, backend_root=tmp_path, backoff_s=0.1, log_file=log)
    sup = supervisor.BackendSupervisor(config)
    sup.start()
    events = []
    end = time.monotonic() + 10
    while not events and time.monotonic() < end:
        events = sup.tick()
        time.sleep(0.02)
    assert events and events[0].address == "tcp://127.0.0.1:1234"
    import os
    import signal

    os.kill(sup.pid, signal.SIGKILL)
    died = []
    end = time.monotonic() + 10
    while not died and time.monotonic() < end:
        died = [e for e in sup.tick() if e.kind == "died"]
        time.sleep(0.02)
    assert died and "signal 9" in died[0].text and "a warning on stderr" in died[0].text
    assert f"full log: {log}" in died[0].text
    text = log.read_text()
    assert "STEPSTONE READY" in text and "a warning on stderr" in text and "-m backend serve" in text
    time.sleep(0.2)
    sup.tick()  # restarts after the back-off
    assert sup.state == State.STARTING
    sup.stop(wait_s=3)
    assert sup.state == State.STOPPED


def test_interpreter_check_reports_versions_or_the_problem(tmp_path):
    (tmp_path / "backend").mkdir()
    (tmp_path / "backend" / "__init__.py").write_text("")
    (tmp_path / "backend" / "__main__.py").write_text(
        'import json; print(json.dumps({"backend_version": "0.1.0", "python": "3.11.9", "torch": "2.15.0", '
        '"cuda_available": False, "pipelines": ["reconstruct"]}))')
    check = interpreter_check.InterpreterCheck(sys.executable, tmp_path)
    end = time.monotonic() + 10
    while check.poll() is None and time.monotonic() < end:
        time.sleep(0.02)
    assert check.result.ok, check.result.summary
    assert "torch 2.15.0" in check.result.summary and "CUDA: no" in check.result.summary
    assert "pipelines: reconstruct" in check.result.summary
    (tmp_path / "backend" / "__main__.py").write_text('raise SystemExit("No module named torch")')
    check = interpreter_check.InterpreterCheck(sys.executable, tmp_path)
    end = time.monotonic() + 10
    while check.poll() is None and time.monotonic() < end:
        time.sleep(0.02)
    assert not check.result.ok and "No module named torch" in check.result.summary
    bad = interpreter_check.InterpreterCheck(str(tmp_path / "missing-python"), tmp_path)
    assert not bad.poll().ok and "does not exist" in bad.result.summary


def test_summarize_broken_torch():
    result = interpreter_check.summarize({"python": "3.11", "torch": None, "problem": "torch cannot be imported: x"})
    assert not result.ok and "torch cannot be imported" in result.summary


def test_the_clip_checkpoint_preference_reaches_the_backend_environment():
    link_mod = core("link")
    settings = link_mod.LinkSettings(mode="local", python=sys.executable, backend_root=ROOT,
                                     clip_checkpoint="/models/open_clip_model.safetensors")
    config = link_mod.BackendLink(settings, core("jobs").JobTracker())._local_config()
    assert config.env()["STEPSTONE_CLIP_CHECKPOINT"] == "/models/open_clip_model.safetensors"
    plain = supervisor.LocalBackendConfig(python=sys.executable, backend_root=ROOT)
    assert plain.env().get("STEPSTONE_CLIP_CHECKPOINT") == __import__("os").environ.get("STEPSTONE_CLIP_CHECKPOINT")
