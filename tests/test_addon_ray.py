"""Batch work on a Ray-backed backend, from the add-on's side: the preferences' Ray Cluster, Ray
Workers and GPUs per Worker become ``backend serve --ray … --workers … --gpus-per-worker …`` of the
local backend (and changing them restarts it), the link keeps every Ray worker fed, and the Batch
panel says where the batch runs when the connected backend reports ``ray`` in its info.

The first part is plain Python (supervisor and link with a fake launcher and client); the second
runs in headless Blender with a fresh add-on session and no backend process (the panels are drawn
into scripts/dump_panel_layout.py's recording layout).
"""

from __future__ import annotations

import sys
from dataclasses import replace
from types import SimpleNamespace

import pytest

from addon_support.fakes import FakeClock, FakeLauncher
from addon_support.package import ROOT, core

supervisor = core("supervisor")
link_mod = core("link")
jobs = core("jobs")
protocol = core("backend_api").protocol
client_mod = core("backend_api").client

BASE_ARGV = ["-m", "backend", "serve", "--host", "127.0.0.1", "--port", "0", "--device", "cpu",
             "--exit-on-stdin-eof"]
RAY_BASE_ARGV = ["-m", "backend", "serve", "--host", "127.0.0.1", "--port", "0", "--exit-on-stdin-eof"]
"""On Ray without --device: the backend refuses it there (the workers' device follows --gpus-per-worker)."""
RAY_FLAGS = ("--ray", "--workers", "--gpus-per-worker")
ON_RAY = {"address": "local", "workers": 2, "gpus_per_worker": 0.0, "nodes": 1}


def ray_flags(argv: list[str]) -> dict[str, str]:
    """The Ray options of a command line, by flag (each flag once, with its value after it)."""
    found = {flag: argv[argv.index(flag) + 1] for flag in RAY_FLAGS if flag in argv}
    assert all(argv.count(flag) <= 1 for flag in RAY_FLAGS), argv
    return found


class StoppingLauncher(FakeLauncher):
    """Its backends exit as soon as they are asked to, so stopping one costs no wait."""

    def launch(self, argv, cwd, env, log_file=None):
        process = super().launch(argv, cwd, env, log_file)
        process.terminate = lambda: process.exit(0)
        return process


class FakeClient:
    """A connected backend whose info (the last pong's) the test sets."""

    server_timeout_s = 5.0

    def __init__(self, address, info=None, **keys):
        self.address = address
        self.info = {"protocol": protocol.PROTOCOL_VERSION, "version": "0.1.0", "devices": ["cpu"], **(info or {})}
        self.sent = []

    def poll(self, timeout_ms=0):
        return []

    def send(self, message):
        self.sent.append(message)

    def health(self):
        return client_mod.ServerHealth(True, self.info, 0.001, None)

    def cancel(self, job):
        pass

    def status(self, job, resend=False):
        pass

    def close(self):
        pass


# ------------------------------------------------------------------------------------ plain Python
def test_the_serve_command_has_the_ray_flags_exactly_when_a_cluster_is_set():
    config = supervisor.LocalBackendConfig(python=sys.executable, backend_root=ROOT, device="cpu")
    assert config.argv()[1:] == BASE_ARGV  # Ray off (the default): the command of old
    assert ray_flags(replace(config, ray_address="   ", ray_workers=8).argv()) == {}
    local = replace(config, ray_address=" local ", ray_workers=4, ray_gpus_per_worker=0.5).argv()
    assert local[1:] == RAY_BASE_ARGV + ["--ray", "local", "--workers", "4", "--gpus-per-worker", "0.5"]
    remote = replace(config, ray_address="ray://head:10001", ray_workers=16, ray_gpus_per_worker=1.0).argv()
    assert ray_flags(remote) == {"--ray": "ray://head:10001", "--workers": "16", "--gpus-per-worker": "1"}
    assert "--device" not in remote
    assert ray_flags(replace(config, ray_address="auto").argv()) == {"--ray": "auto", "--workers": "2",
                                                                     "--gpus-per-worker": "0"}


def test_the_backend_accepts_the_serve_command_with_and_without_ray():
    """The add-on's command line parsed by the backend's own ``serve`` options (nothing is started)."""
    from backend import cli

    config = supervisor.LocalBackendConfig(python=sys.executable, backend_root=ROOT, device="cuda")
    plain = cli.build_parser().parse_args(config.argv()[3:])
    assert (plain.device, plain.ray, cli._ray_options(plain)) == ("cuda", None, None)
    on_ray = replace(config, ray_address="ray://head:10001", ray_workers=5, ray_gpus_per_worker=0.5)
    args = cli.build_parser().parse_args(on_ray.argv()[3:])
    options = cli._ray_options(args)  # refuses a --device other than auto with --ray
    assert (options.address, options.workers, options.gpus_per_worker) == ("ray://head:10001", 5, 0.5)
    assert options.device == "cuda" and args.exit_on_stdin_eof


def test_the_link_starts_the_local_backend_with_the_ray_flags_of_its_settings():
    launcher = StoppingLauncher()
    settings = link_mod.LinkSettings(mode="local", python=sys.executable, backend_root=ROOT, device="cpu",
                                     ray_address="head:6379", ray_workers=3, ray_gpus_per_worker=0.25)
    link = link_mod.BackendLink(settings, jobs.JobTracker(), launcher=launcher, clock=FakeClock())
    link.ensure_running()
    assert ray_flags(launcher.calls[-1][0]) == {"--ray": "head:6379", "--workers": "3", "--gpus-per-worker": "0.25"}
    off = link_mod.LinkSettings(mode="local", python=sys.executable, backend_root=ROOT, device="cpu")
    assert (off.ray_address, off.ray_workers, off.ray_gpus_per_worker) == ("", 2, 0.0)
    link.shutdown()
    link = link_mod.BackendLink(off, jobs.JobTracker(), launcher=launcher, clock=FakeClock())
    link.ensure_running()
    assert launcher.calls[-1][0][1:] == BASE_ARGV
    link.shutdown()


def test_changed_ray_settings_restart_the_local_backend_with_the_new_flags():
    launcher = StoppingLauncher()
    settings = link_mod.LinkSettings(mode="local", python=sys.executable, backend_root=ROOT, device="cpu")
    link = link_mod.BackendLink(settings, jobs.JobTracker(), launcher=launcher, clock=FakeClock(),
                                client_factory=FakeClient)
    link.ensure_running()
    first = launcher.last
    first.say_ready()
    link.tick()
    assert link.supervisor.state == supervisor.BackendState.READY
    link.configure(replace(settings))  # the same settings: the backend keeps running
    assert link.supervisor is not None and not first.terminated
    link.configure(replace(settings, ray_address="local", ray_workers=6))
    assert link.supervisor is None and first.code == 0  # stopped; the next job starts the new one
    link.ensure_running()
    assert ray_flags(launcher.last.argv) == {"--ray": "local", "--workers": "6", "--gpus-per-worker": "0"}
    link.shutdown()


def test_a_backend_on_ray_that_cannot_start_says_which_setting_brought_ray_in():
    def gave_up(**ray) -> str:
        launcher = FakeLauncher()
        config = supervisor.LocalBackendConfig(python=sys.executable, backend_root=ROOT, **ray)
        sup = supervisor.BackendSupervisor(config, launcher, FakeClock())
        sup.start()
        launcher.last.exit(2, "error: Ray is not installed in this environment: install the scale extra")
        events = sup.tick()
        assert events[-1].kind == "gave_up" and sup.state == supervisor.BackendState.GAVE_UP
        return events[-1].text

    on_ray = gave_up(ray_address="ray://head:10001")
    assert "Ray is not installed" in on_ray  # the backend's own reason comes first
    assert "Ray Cluster is 'ray://head:10001'" in on_ray and "pip install '.[scale]'" in on_ray
    assert "clear Ray Cluster" in on_ray
    assert "Ray Cluster" not in gave_up()


def test_every_ray_worker_gets_a_job_of_a_large_batch():
    """16 jobs at the backend keep one GPU busy; a backend with 20 Ray workers gets 16 + 19, so each
    worker runs one and 16 wait (the backend's per-client limit counts only waiting jobs)."""
    def sent_of_a_batch(info) -> int:
        tracker = jobs.JobTracker()
        link = link_mod.BackendLink(link_mod.LinkSettings(mode="remote", address="tcp://127.0.0.1:5990"), tracker,
                                    client_factory=lambda address, **keys: FakeClient(address, info))
        for index in range(60):
            link.submit(tracker.add(jobs.JobSpec("generate", prompt=f"p{index}"), f"p{index}"))
        link.tick()
        return len(link.client.sent)

    assert sent_of_a_batch({}) == link_mod.MAX_SENT_JOBS
    assert sent_of_a_batch({"ray": None}) == link_mod.MAX_SENT_JOBS
    assert sent_of_a_batch({"ray": dict(ON_RAY, workers=1)}) == link_mod.MAX_SENT_JOBS
    assert sent_of_a_batch({"ray": dict(ON_RAY, workers=20)}) == link_mod.MAX_SENT_JOBS + 19


# ------------------------------------------------------------------------------------ headless Blender
@pytest.fixture(scope="module")
def blender():
    bpy = pytest.importorskip("bpy")
    from addon_support import blender_env as env
    from addon_support import layout_dump

    env.enable_extension()
    return SimpleNamespace(bpy=bpy, env=env, dump=layout_dump.load(),
                           session_module=env.addon_module("blender.session"),
                           preferences=env.addon_module("blender.preferences"),
                           link_module=env.addon_module("core.link"))


@pytest.fixture
def staged(blender):
    """A fresh add-on session (no backend) with a batch; the preferences this module sets are put
    back afterwards, while this session is still the current one (their updates mark it alone)."""
    prefs = blender.env.prefs()
    names = ("backend_mode", "python_path", "device", "ray_address", "ray_workers", "ray_gpus_per_worker")
    before = {name: getattr(prefs, name) for name in names}
    session, restore = blender.dump.stage(blender.session_module)
    prefs.backend_mode, prefs.python_path, prefs.device = "LOCAL", sys.executable, "cpu"
    prefs.ray_address, prefs.ray_workers, prefs.ray_gpus_per_worker = "", 2, 0.0
    yield session
    if session.link is not None:
        session.link.shutdown()
    for name, value in before.items():
        setattr(prefs, name, value)
    restore()


def batch_lines(blender, width: float = 300) -> list[str]:
    """The Batch panel's Ray line (wrapped labels joined again), or [] when it draws none."""
    record = blender.dump.draw_panel("STEPSTONE_PT_batch", blender.dump.SizedContext(width))
    for node in [record, *record.layouts()]:
        texts = [item.text for item in node.children if getattr(item, "kind", "") == "label"]
        if texts and texts[0].startswith("Runs on Ray"):
            assert node.children[0].icon == "NETWORK_DRIVE"
            return [" ".join(texts)]
    assert not any("Ray" in text for text in record.texts()), record.texts()
    return []


def test_the_preferences_set_the_ray_fields_of_the_link_settings(blender, staged):
    prefs, preferences = blender.env.prefs(), blender.preferences
    off = preferences.link_settings(prefs)
    assert (off.ray_address, off.ray_workers, off.ray_gpus_per_worker) == ("", 2, 0.0)
    prefs.ray_workers = 7  # means nothing while Ray is off: the settings (and the backend) stay as they are
    assert preferences.link_settings(prefs) == off
    prefs.ray_address, prefs.ray_gpus_per_worker = "  ray://head:10001 ", 0.5
    on = preferences.link_settings(prefs)
    assert (on.ray_address, on.ray_workers, on.ray_gpus_per_worker) == ("ray://head:10001", 7, 0.5)
    argv = blender.link_module.BackendLink(on, staged.tracker)._local_config().argv()
    assert ray_flags(argv) == {"--ray": "ray://head:10001", "--workers": "7", "--gpus-per-worker": "0.5"}
    # the properties' limits
    prefs.ray_workers, prefs.ray_gpus_per_worker = 500, 20.0
    assert (prefs.ray_workers, prefs.ray_gpus_per_worker) == (64, 8.0)
    prefs.ray_workers, prefs.ray_gpus_per_worker = 0, -1.0
    assert (prefs.ray_workers, prefs.ray_gpus_per_worker) == (1, 0.0)
    rna = prefs.bl_rna.properties
    assert (rna["ray_address"].name, rna["ray_workers"].name, rna["ray_gpus_per_worker"].name) == (
        "Ray Cluster", "Ray Workers", "GPUs per Worker")
    assert all("[scale]" in rna[name].description for name in ("ray_address", "ray_workers", "ray_gpus_per_worker"))


def test_the_preferences_draw_the_ray_settings_with_the_local_backend(blender, staged):
    prefs = blender.env.prefs()

    class Drawn:
        """The preferences with a recording layout (an add-on's ``layout`` cannot be replaced)."""

        def __init__(self, layout):
            self.layout = layout

        def __getattr__(self, name):
            return getattr(prefs, name)

    def drawn_props() -> list[str]:
        layout = blender.dump.RecordingLayout(context=blender.dump.SizedContext(600))
        type(prefs).draw(Drawn(layout), layout.context)
        return [item.name for item in layout.items() if item.kind == "prop"]

    props = drawn_props()
    assert "ray_address" in props and "ray_workers" not in props  # workers only matter on Ray
    assert props.index("device") < props.index("ray_address") < props.index("quality")
    prefs.ray_address = "local"
    assert {"ray_address", "ray_workers", "ray_gpus_per_worker"} <= set(drawn_props())
    prefs.backend_mode = "REMOTE"  # a remote backend has its own settings
    assert not {"ray_address", "ray_workers", "ray_gpus_per_worker"} & set(drawn_props())


def test_changing_a_ray_preference_restarts_the_local_backend_on_the_next_tick(blender, staged):
    prefs, preferences = blender.env.prefs(), blender.preferences
    launcher = StoppingLauncher()
    staged.tracker = blender.session_module.JobTracker()  # no jobs: a job in flight would hold the change back
    staged.link = blender.link_module.BackendLink(preferences.link_settings(prefs), staged.tracker,
                                                  launcher=launcher, client_factory=FakeClient)
    staged.link.ensure_running()
    first = launcher.last
    assert first.argv[1:] == BASE_ARGV
    first.say_ready()
    staged.tick()
    assert staged.link.supervisor.state.value == "ready" and staged.link.client is not None
    prefs.ray_address = "local"
    staged.tick()
    assert first.code == 0 and staged.link.supervisor is None  # stopped; the next job starts the new one
    staged.link.ensure_running()
    assert ray_flags(launcher.last.argv) == {"--ray": "local", "--workers": "2", "--gpus-per-worker": "0"}


def test_the_batch_panel_says_when_the_backend_runs_on_ray(blender, staged):
    info = {"pipelines": {}, "devices": ["cpu"]}
    staged.server_info = lambda: info
    assert batch_lines(blender) == []
    info["ray"] = None
    assert batch_lines(blender) == []
    info.update(ray=ON_RAY, devices=["ray:0", "ray:1"])
    assert batch_lines(blender) == ["Runs on Ray: 2 workers (local)"]
    info["ray"] = {"address": "ray://head:10001", "workers": 12, "gpus_per_worker": 0.5, "nodes": 3}
    lines = batch_lines(blender, width=300)
    assert lines == ["Runs on Ray: 12 workers, 0.5 GPUs each (ray://head:10001, 3 nodes)"]
    record = blender.dump.draw_panel("STEPSTONE_PT_batch", blender.dump.SizedContext(300))
    limit = blender.dump.addon_core("text_layout").TextWidth(300).chars()
    assert blender.dump.render(record, limit)[1] == 0  # wrapped, never cut by Blender


def test_the_batch_panel_reads_ray_from_the_links_cached_server_info(blender, staged):
    """The real path, session → link → client health (the last pong's info: draw never waits)."""
    del staged.server_info  # the staged session's stand-in; the session's own method from here on
    assert batch_lines(blender) == []  # no link yet
    made = []
    settings = blender.link_module.LinkSettings(mode="remote", address="tcp://127.0.0.1:5989")
    staged.link = blender.link_module.BackendLink(
        settings, staged.tracker, client_factory=lambda address, **keys: made.append(FakeClient(address)) or made[-1])
    staged.link.ensure_running()
    assert batch_lines(blender) == []  # connected, not on Ray
    made[0].info["ray"] = dict(ON_RAY, address="head:6379", workers=1, gpus_per_worker=1.0)
    assert batch_lines(blender) == ["Runs on Ray: 1 worker, 1 GPU each (head:6379)"]
