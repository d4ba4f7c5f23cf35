"""Stepstone as a Blender extension: the repository root is the extension root.

Blender imports this package (as ``bl_ext.<repo>.stepstone``) and calls ``register``; the add-on
itself lives in ``addon/``. bpy is imported only when Blender registers the add-on, so the
bpy-free core can be imported (and tested) without it.

Blender before 4.2 has no extensions: it can only take this folder as a legacy add-on, which it
lists from the ``bl_info`` below (read as text, so the dict stays literal and blank-line free) and
enables by calling ``register``. That refuses with what to do instead, before the add-on's own
imports could fail with something cryptic. Blender 4.2 and newer ignore ``bl_info`` in an
extension (the manifest says it all) and never take this branch.
"""

bl_info = {
    "name": "Stepstone",
    "blender": (4, 2, 0),
    "category": "3D View",
    "location": "View3D > Sidebar > Stepstone",
    "description": "Turn reference images and text prompts into textured 3D objects",
    "warning": "Needs Blender 4.2 or newer, installed as an extension",
}

MIN_BLENDER = (4, 2, 0)
"""Not read from ``bl_info``: Blender 4.2+ deletes that from an extension's module when enabling it."""


def version_refusal(version) -> str:
    """Why this Blender cannot run Stepstone ("" when it can)."""
    if tuple(version[:3]) >= MIN_BLENDER:
        return ""
    found = ".".join(str(part) for part in version[:3])
    return (f"Stepstone needs Blender 4.2 or newer; this is Blender {found}. In Blender 4.2 or newer, install it "
            "as an extension: Edit → Preferences → Get Extensions → Install from Disk")


def register() -> None:
    import bpy

    refusal = version_refusal(bpy.app.version)
    if refusal:
        raise RuntimeError(refusal)
    from .addon.blender import registration

    registration.register()


def unregister() -> None:
    from .addon.blender import registration

    registration.unregister()
