"""Running the job engine's pipelines on a Ray cluster (optional: ``pip install .[scale]``).

Ray is the engine for spreading work over processes, GPUs and machines; this package only adapts
it to the job engine. Each engine worker owns one Ray actor that keeps its pipelines warm
(``actor.PipelineActor``), behind the same handle as a local pipeline process
(``process.RayPipelineProcess``), so deadlines, cancel, progress and result checks are the
engine's own. ``cluster`` connects to (or starts) the cluster. Nothing here imports Ray until a
command asks for it.
"""
