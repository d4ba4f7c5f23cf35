"""The bpy layer of the add-on: thin operators and panels over ``addon.core``."""
