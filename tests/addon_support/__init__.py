"""Helpers for the add-on tests: loading the extension as Blender does, fake processes, backends."""
