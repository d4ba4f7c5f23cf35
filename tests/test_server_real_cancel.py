"""Cancel in every stage of the real reconstruct pipeline, through a real server (reliability
finding 2). The order is checked here: the stage began, the cancel went out, the job's one final
message says cancelled and nothing follows it. How long each stage takes to stop is measured by
scripts/bench_reliability.py, not here."""

from pathlib import Path

import pytest

from backend import protocol
from backend.pipelines.registry import default_registry

MUG = Path(__file__).resolve().parents[1] / "examples" / "mug.png"
STAGES = ("segment", "encode", "refine", "mesh", "texture")


@pytest.mark.slow
def test_cancel_in_each_stage_of_the_real_pipeline_ends_the_job_and_nothing_follows(run_server, client_for):
    server = run_server(default_registry())
    client = client_for(server.address, server_timeout_s=60)
    image = MUG.read_bytes()
    for stage in STAGES:
        job = f"cancel-in-{stage}"
        client.send(protocol.submit_reconstruct(job, [image], {"method": "model", "timeout_s": 300}))
        client.wait_for(lambda m: m.job == job and m.type == "progress" and m.get("stage") == stage, 300)
        client.send(protocol.cancel(job))
        final = client.wait_for(lambda m: m.job == job and m.type in ("error", "result"), 30)
        assert final.type == "error" and final.get("state") == "cancelled", (stage, final.fields)
        # (the client drops late messages for ended jobs itself, so ask the engine what it kept)
        recorded = server.engine.get(job)
        assert recorded.state == "cancelled" and recorded.result is None
    # the pipeline process (perhaps a replacement) still serves jobs
    done = client.run_job(protocol.submit_reconstruct("after", [image], {"quality": "preview"}), 300)
    assert done.type == "result"
