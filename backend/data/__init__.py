"""Training data for the shape model: procedural shapes, their renders, and dataset readers.

Modules (import them directly; none pulls in torch, and bpy is imported only inside the
render worker):
- ``procedural``: CATEGORIES, make_shape(category, seed) -> ProceduralShape (analytic SDF, mesh, colours)
- ``samples``: surface / SDF / occupancy samples of a shape
- ``cameras``: view + light sampling and the camera conventions
- ``render_blender``: Cycles renders (RGBA, normals, depth) of a mesh, run inside worker processes
- ``generate``: parallel, resumable dataset generation (scripts/gen_data.py is its CLI)
- ``dataset``: ProceduralDataset(root, split) reader; ``dvr``: DVRDataset for real ShapeNet-style data
- ``records``: the ShapeRecord both readers yield
"""
