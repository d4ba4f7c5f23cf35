"""bpy-free core of the add-on. Nothing in here may import bpy or torch."""
