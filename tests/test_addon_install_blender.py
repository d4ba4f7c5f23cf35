"""Install Backend, Repair and Remove from the add-on preferences, in headless Blender, against a
local wheel folder (issue 20, item 1). The steps themselves: test_addon_backend_install.py."""

import shutil
from pathlib import Path

import pytest

bpy = pytest.importorskip("bpy")

from addon_support import blender_env as env  # noqa: E402
from addon_support.wheels import probe_wheelhouse  # noqa: E402


@pytest.fixture
def setup(tmp_path, monkeypatch):
    env.enable_extension()
    module = env.addon_module("blender.backend_setup")
    requirements = probe_wheelhouse(tmp_path / "wheels")
    monkeypatch.setattr(module, "REQUIREMENTS", requirements)
    p = env.prefs()
    saved = (p.python_path, p.install_source, p.install_torch, p.backend_mode)
    p.python_path, p.install_source, p.install_torch, p.backend_mode = "", str(tmp_path / "wheels"), "cpu", "LOCAL"
    yield module
    session = env.session()
    if session.installer is not None:
        session.installer.cancel()
    session.installer = None
    for folder in (module.env_dir(), env.addon_module("blender.preferences").user_folder(module.DOWNLOADS_FOLDER)):
        shutil.rmtree(folder, ignore_errors=True)  # the user folder outlives the test process
    p.python_path, p.install_source, p.install_torch, p.backend_mode = saved


def wait_for_installer(timeout=240):
    env.pump(lambda: env.session().installer.final, timeout=timeout, interval=0.05)
    return env.session().installer.progress


@pytest.mark.slow
def test_install_then_the_backend_runs_from_the_new_environment_then_remove(setup):
    prefs_mod = env.addon_module("blender.preferences")
    p = env.prefs()
    assert setup.install_state(p)[0] == "none"
    before = prefs_mod.link_settings(p).python
    assert bpy.ops.stepstone.install_backend() == {"FINISHED"}
    assert env.session().installer.progress.state == "running"
    progress = wait_for_installer()
    assert progress.state == "done", progress.text
    folder = setup.env_dir()
    assert folder == Path(bpy.utils.extension_path_user(env.PACKAGE, path="backend-env"))
    python = str(folder / "bin" / "python")
    # No other step: with Backend Python empty, the local backend now starts with this interpreter.
    assert prefs_mod.link_settings(p).python == python != before
    assert setup.install_state(p) == ("installed", setup.install_state(p)[1])
    assert any(n.text.startswith("Backend installed in ") for n in env.session().notices)
    assert (Path(bpy.utils.extension_path_user(env.PACKAGE, path="logs")) / "install.log").is_file()
    # The Check ran on the new environment by itself (it lacks torch: these are test wheels).
    env.pump(lambda: env.session().check is None and p.check_result not in ("", "checking…"), timeout=60)
    assert p.check_result.startswith(f"the backend Python {python} lacks torch")

    assert bpy.ops.stepstone.install_backend(repair=True) == {"FINISHED"}
    progress = wait_for_installer()
    assert progress.state == "done" and env.session().installer.plan.repair

    assert bpy.ops.stepstone.remove_backend() == {"FINISHED"}
    progress = wait_for_installer()
    assert progress.state == "done" and not folder.exists()
    assert prefs_mod.link_settings(p).python == before
    assert setup.install_state(p)[0] == "none"


def test_without_online_access_nothing_is_downloaded_and_the_fix_is_named(setup):
    p = env.prefs()
    p.install_source = ""
    assert not bpy.app.online_access  # headless Blender starts with online access off
    with pytest.raises(RuntimeError, match="Allow Online Access"):
        bpy.ops.stepstone.install_backend()
    assert env.session().installer is None
    p.install_source = "/no/such/folder"
    with pytest.raises(RuntimeError, match="is not a folder"):
        bpy.ops.stepstone.install_backend()


def test_a_second_install_while_one_runs_is_refused_and_cancel_stops_it(setup):
    assert bpy.ops.stepstone.install_backend() == {"FINISHED"}
    first = env.session().installer
    assert bpy.ops.stepstone.install_backend() == {"CANCELLED"}  # with the warning "already running"
    assert env.session().installer is first
    assert bpy.ops.stepstone.cancel_install() == {"FINISHED"}
    env.pump(lambda: True)
    assert first.progress.state == "cancelled"
    assert any("resume" in n.text and n.level == "WARNING" for n in env.session().notices)


def draw_preferences(width=700):
    """The add-on preferences drawn into the recording layout of scripts/dump_panel_layout.py."""
    from types import SimpleNamespace

    from addon_support import layout_dump

    dump = layout_dump.load()
    layout = dump.RecordingLayout(context=dump.SizedContext(width))

    class Drawn:  # the preferences object, with the recording layout as its own
        def __getattr__(self, name):
            return layout if name == "layout" else getattr(env.prefs(), name)

    type(env.prefs()).draw(Drawn(), layout.context)
    return layout, SimpleNamespace(labels=" | ".join(layout.texts()), operators=layout.operators())


def test_the_preferences_show_the_install_its_progress_and_its_failure(setup, tmp_path):
    layout, shown = draw_preferences()
    assert "stepstone.install_backend" in shown.operators and "stepstone.remove_backend" in shown.operators
    assert "Not installed: Install Backend makes it here, with no terminal" in shown.labels
    assert bpy.ops.stepstone.install_backend() == {"FINISHED"}
    layout, shown = draw_preferences()
    [bar] = [item for item in layout.items() if item.kind == "progress"]
    assert bar.text.startswith("Step 1 of ") and "stepstone.cancel_install" in shown.operators
    assert "stepstone.install_backend" not in shown.operators
    bpy.ops.stepstone.cancel_install()
    env.pump(lambda: True)
    env.prefs().install_source = str(tmp_path / "empty")
    (tmp_path / "empty").mkdir()
    setup.REQUIREMENTS.write_text("stepstone-not-published==1.0\n")
    assert bpy.ops.stepstone.install_backend() == {"FINISHED"}
    progress = wait_for_installer()
    assert progress.state == "failed"
    layout, shown = draw_preferences(width=320)
    failure = [item for item in layout.items() if item.kind == "label" and item.alert]
    # wrapped over several labels at a narrow width; nothing cut
    assert len(failure) > 2 and "stepstone-not-published==1.0" in " ".join(item.text for item in failure)


def test_before_any_install_the_sidebar_says_what_to_press(setup, monkeypatch):
    prefs_mod = env.addon_module("blender.preferences")
    # An installed extension has no development .venv beside it (this checkout does).
    monkeypatch.setattr(prefs_mod, "default_backend_python", lambda root: "")
    session = env.session()
    session.shutdown()  # no link yet, as in a fresh Blender
    assert prefs_mod.backend_python(env.prefs()) == ""
    assert session.status().text == ("no backend environment yet: press Install Backend in "
                                     "Preferences → Add-ons → Stepstone")
    env.prefs().backend_mode = "REMOTE"
    assert session.status().text.startswith("not running (connects to tcp://")
