"""Stepstone backend: the process that turns images and prompts into meshes for the Blender add-on."""

__version__ = "0.1.0"
