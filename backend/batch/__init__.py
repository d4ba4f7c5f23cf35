"""``python -m backend batch``: many images or prompts, one result each, resumable.

``items`` turns the command's inputs into items with stable keys and output names, ``manifest``
records each item's state in the output folder, ``runner`` feeds the items to a job engine (one
local pipeline process, or a pool of Ray workers) and writes each result as it finishes.
"""
