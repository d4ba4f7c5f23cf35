"""Panel inputs (per scene, saved with the .blend) and the job list mirror (window manager, not saved)."""

from __future__ import annotations

import bpy

from ..core.mining import DEFAULT_MIN_PHOTOS, MIN_PHOTOS_LIMITS
from . import preferences

MAX_HISTORY = 20

RECONSTRUCT_METHODS = [
    ("auto", "Auto", "The outline solid when the image shows a turned object's rim from above or a box; else "
                      "the learned shape model when its result is clean; otherwise the outline solid"),
    ("outline", "Outline", "A surface of revolution (vessels, bottles), a box, or an inflation of the outline seen "
                           "in the image, with the photo's own colours"),
    ("model", "Shape Model", "The learned shape model (fails when its weights are missing)"),
    ("silhouette", "Silhouette",
     "The inflation baseline: extrude the outline seen in the image, exact outline, no hidden parts")]
RECONSTRUCT_OUTPUTS = (
    ("MESH", "Mesh", "A textured, editable mesh"),
    ("POINTS", "Points", "A coloured point cloud, vertices only; faster, no texture baking"))
"""Reconstruct's *Output*, and a folder batch's: POINTS sends ``output: points``, MESH sends nothing."""


class StepstonePromptItem(bpy.types.PropertyGroup):
    prompt: bpy.props.StringProperty(name="Prompt")
    negative_prompt: bpy.props.StringProperty(name="Negative Prompt")
    seed: bpy.props.IntProperty(name="Seed", min=0)


class StepstoneSceneSettings(bpy.types.PropertyGroup):
    # text to shape
    prompt: bpy.props.StringProperty(name="Prompt", description="What to make, e.g. 'a wooden chair'")
    negative_prompt: bpy.props.StringProperty(name="Negative", description="What to avoid, or a style prompt")
    seed: bpy.props.IntProperty(name="Seed", min=0, max=2**31 - 1, description="Same seed + prompt = same shape")
    stylize_texture: bpy.props.BoolProperty(name="Stylize Texture",
                                            description="Also paint the texture from the prompt")
    candidates: bpy.props.IntProperty(name="Candidates", default=1, min=1, max=8,
                                      description="Shapes tried per prompt; the best one is kept")
    history: bpy.props.CollectionProperty(type=StepstonePromptItem)
    history_index: bpy.props.IntProperty()
    # reconstruct
    multiview: bpy.props.BoolProperty(
        name="One Object from All", default=False,
        description="Several selected images are views of one object (one job); otherwise one job per image")
    reconstruct_method: bpy.props.EnumProperty(name="Method", default="auto", items=RECONSTRUCT_METHODS)
    reconstruct_output: bpy.props.EnumProperty(name="Output", default="MESH", items=RECONSTRUCT_OUTPUTS)
    placement: bpy.props.EnumProperty(
        name="Place", default="CURSOR",
        items=[("CURSOR", "At 3D Cursor", "Stand the result on the 3D cursor at the target size"),
               ("PLACEHOLDER", "Replace Active Object",
                "Fit the result into the active object's bounds and take its transform")])
    # stylize
    stylize_prompt: bpy.props.StringProperty(name="Style", description="How the selected mesh should look")
    stylize_mode: bpy.props.EnumProperty(
        name="Mode", default="texture",
        items=[("texture", "Texture Only", "Keep the geometry"),
               ("texture_shape", "Texture + Shape", "Let the geometry move a little too")])
    # batch
    batch_source: bpy.props.EnumProperty(
        name="Source", default="TEXT",
        items=[("TEXT", "Text Block", "One prompt per line of a text block"),
               ("FILE", "Prompt File", ".txt (one prompt per line) or .csv (prompt, negative_prompt, seed, name)"),
               ("FOLDER", "Image Folder", "One reconstruct job per image in a folder")])
    batch_text: bpy.props.PointerProperty(name="Text", type=bpy.types.Text)
    batch_file: bpy.props.StringProperty(name="File", subtype="FILE_PATH")
    batch_folder: bpy.props.StringProperty(name="Folder", subtype="DIR_PATH")
    batch_method: bpy.props.EnumProperty(
        name="Method", default="auto", items=RECONSTRUCT_METHODS,
        description="How each image of a folder batch is reconstructed")
    batch_output: bpy.props.EnumProperty(
        name="Output", default="MESH", items=RECONSTRUCT_OUTPUTS,
        description="What each image of a folder batch becomes: a mesh or a point cloud")
    batch_quality: bpy.props.EnumProperty(
        name="Quality", default="default", items=preferences.QUALITIES,
        description="Quality of every job of the batch")
    batch_placement: bpy.props.EnumProperty(
        name="Place", default="GRID",
        items=[("GRID", "Grid at Cursor", "Lay results out on a grid around the 3D cursor"),
               ("PLACEHOLDERS", "Selected Placeholders",
                "Item n replaces the n-th selected object (by name); the rest go on a grid")])
    # mine shapes from folder (uses the batch's Quality)
    mine_min_photos: bpy.props.IntProperty(
        name="Minimum photos per object", default=DEFAULT_MIN_PHOTOS, min=MIN_PHOTOS_LIMITS[0],
        max=MIN_PHOTOS_LIMITS[1],
        description="Photos that must show the same object for it to be mined; smaller groups are outliers")
    mine_folder: bpy.props.StringProperty(
        name="Photo Folder", subtype="DIR_PATH",
        description="The folder last mined (the file browser opens there)")


class StepstoneJobItem(bpy.types.PropertyGroup):
    """A read-only mirror of one job for the UI list (the add-on's session holds the truth)."""

    job_id: bpy.props.StringProperty()
    label: bpy.props.StringProperty()
    state: bpy.props.StringProperty()
    detail: bpy.props.StringProperty()
    progress: bpy.props.FloatProperty(min=0.0, max=1.0, subtype="FACTOR")
    eta: bpy.props.StringProperty()
    batch: bpy.props.StringProperty()
    can_cancel: bpy.props.BoolProperty()
    can_retry: bpy.props.BoolProperty()
    held: bpy.props.BoolProperty()


def remember_prompt(settings: StepstoneSceneSettings) -> None:
    """Put the current prompt first in the history (no duplicates, newest first)."""
    history = settings.history
    for index in range(len(history) - 1, -1, -1):
        if history[index].prompt == settings.prompt and history[index].negative_prompt == settings.negative_prompt:
            history.remove(index)
    item = history.add()
    item.prompt, item.negative_prompt, item.seed = settings.prompt, settings.negative_prompt, settings.seed
    history.move(len(history) - 1, 0)
    while len(history) > MAX_HISTORY:
        history.remove(len(history) - 1)


CLASSES = (StepstonePromptItem, StepstoneSceneSettings, StepstoneJobItem)


def register_properties() -> None:
    bpy.types.Scene.stepstone = bpy.props.PointerProperty(type=StepstoneSceneSettings)
    bpy.types.WindowManager.stepstone_jobs = bpy.props.CollectionProperty(type=StepstoneJobItem)
    bpy.types.WindowManager.stepstone_jobs_index = bpy.props.IntProperty()


def unregister_properties() -> None:
    del bpy.types.WindowManager.stepstone_jobs_index
    del bpy.types.WindowManager.stepstone_jobs
    del bpy.types.Scene.stepstone
