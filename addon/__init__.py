"""The Blender side of Stepstone.

``core/`` is plain Python (no bpy): job state, mesh array packing, batch parsing, placement math
and backend supervision, tested with pytest. ``blender/`` is the thin bpy layer on top: preferences,
properties, the one timer, operators, panels and mesh import.
"""
