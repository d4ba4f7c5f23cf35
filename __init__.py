"""Stepstone as a Blender extension: the repository root is the extension root.

Blender imports this package (as ``bl_ext.<repo>.stepstone``) and calls ``register``; the add-on
itself lives in ``addon/``. bpy is imported only when Blender registers the add-on, so the
bpy-free core can be imported (and tested) without it.
"""


def register() -> None:
    from .addon.blender import registration

    registration.register()


def unregister() -> None:
    from .addon.blender import registration

    registration.unregister()
