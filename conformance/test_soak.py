"""The short kill -9 soak (conformance/soak.py): a mixed workload while the server is killed
and restarted at random moments; nothing lost, nothing duplicated, no event id reused."""

import pytest

from soak import soak


@pytest.mark.timeout(300)
async def test_kill_9_soak_loses_and_duplicates_nothing(external_address, tmp_path):
    if external_address:
        pytest.skip("needs a server process managed by the suite (SUNDIAL_ADDRESS is set)")
    report = await soak(None, workflows=30, seconds=25, kill_every=(1.0, 3.0), workdir=tmp_path)
    assert report.kills >= 2, report
    assert report.problems == [], report.problems[:20]
    assert (report.completed, report.lost, report.duplicated) == (30, 0, 0)
