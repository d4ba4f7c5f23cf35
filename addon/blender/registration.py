"""register/unregister: classes, properties, the one persistent timer, and backend shutdown."""

from __future__ import annotations

import atexit

import bpy

from . import backend_setup, operators, panels, preferences, properties, session

_CLASSES = (preferences.StepstonePreferences, *properties.CLASSES, *operators.CLASSES, *backend_setup.CLASSES,
            *panels.CLASSES)


@bpy.app.handlers.persistent
def _on_load_post(*_args) -> None:
    # A new file brings a new window manager: rebuild the job list mirror on the next tick.
    session.get_session()._synced_version = -1


def register() -> None:
    for cls in _CLASSES:
        bpy.utils.register_class(cls)
    properties.register_properties()
    bpy.app.timers.register(session.timer, first_interval=0.1, persistent=True)
    bpy.app.handlers.load_post.append(_on_load_post)
    # Blender runs Python's exit handlers when it quits: the local backend must not outlive it.
    atexit.register(session.end_session)


def unregister() -> None:
    atexit.unregister(session.end_session)
    session.end_session()
    if _on_load_post in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(_on_load_post)
    if bpy.app.timers.is_registered(session.timer):
        bpy.app.timers.unregister(session.timer)
    properties.unregister_properties()
    for cls in reversed(_CLASSES):
        bpy.utils.unregister_class(cls)
