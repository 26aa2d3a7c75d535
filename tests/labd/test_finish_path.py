"""The finish path's shortcuts (bench/finish_cost.py) give exactly what the longer way gives: early stopping from the
CDF's head, the assignment's settings without asdict, the median of the repeats without numpy, blobs read together."""

from __future__ import annotations

import os

import numpy as np
import pytest

from labd.blobs import BlobMissing, FsBlobs, digest_of
from pilotlab import stats
from pilotlab.attempt_metrics import _median
from pilotlab.compliance import _settings_dict
from pilotlab.tasks import SCENARIO_SETTINGS, effective, requested


@pytest.mark.parametrize("confidence", [0.99, 0.95])
@pytest.mark.parametrize("percentile", [50, 90, 95, 99, 99.9])
def test_early_stopping_counts_as_the_whole_cdf_does(percentile: float, confidence: float) -> None:
    q = 1 - percentile / 100.0
    for n in [*range(1, 1500), 4_999, 20_000, 100_003]:
        whole = int(np.searchsorted(stats.binom_cdf(n, q)[:n], 1 - confidence, side="right"))
        assert stats._count_at_most(n, q, 1 - confidence) == whole, n


@pytest.mark.parametrize("n", [60, 1_000, 5_000, 60_000])
@pytest.mark.parametrize("q", [0.5, 0.1, 0.05, 0.01, 0.001])
def test_the_cdf_head_is_the_cdf_bit_for_bit(n: int, q: float) -> None:
    m = min(stats._head_end(n, q), n)
    assert np.array_equal(stats._binom_cdf_head(n, q, m), stats.binom_cdf(n, q)[:m + 1])


@pytest.mark.parametrize("scenario", sorted(SCENARIO_SETTINGS))
def test_settings_dict_is_to_dict(scenario: str) -> None:
    extra = {"target_qps": 10.0} if scenario == "server" else {"rate_hz": 5.0} if scenario == "periodic" else {}
    settings = effective(requested(scenario, extra))
    fast, slow = _settings_dict(settings), settings.to_dict()
    assert fast == slow and list(fast) == list(slow)
    assert all(type(fast[k]) is type(slow[k]) for k in fast)


def test_median_is_numpys() -> None:
    rng = np.random.default_rng(3)
    for _ in range(5_000):
        xs = [float(x) for x in rng.random(int(rng.integers(1, 8))) * 10.0 ** int(rng.integers(-3, 9))]
        assert _median(xs) == float(np.median(xs))


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open files in /proc")
def test_get_many_reads_what_get_reads_and_fails_as_it_fails(tmp_path: os.PathLike[str]) -> None:
    blobs = FsBlobs(tmp_path)
    items = [(digest_of(b), b) for b in (b"one", b"two" * 100, b"", b"four")]
    ats = blobs.put_many(items[:2]) + blobs.put_many(items[2:])  # two packs
    loose = b"a file of its own"
    blobs.put(loose)
    wanted = [(dg, at) for (dg, _), at in zip(items, ats, strict=True)] + [(digest_of(loose), "")]
    before = _open_fds()
    assert list(blobs.get_many(wanted)) == [blobs.get(dg, at) for dg, at in wanted] == [b for _, b in items] + [loose]
    assert _open_fds() == before
    read = blobs.get_many(wanted)
    next(read)
    read.close()  # taken only in part: its pack closed all the same
    assert _open_fds() == before
    corrupt = [wanted[0], (items[3][0], ats[1])]  # another blob's bytes under its name
    with pytest.raises(BlobMissing) as one:
        blobs.get(*corrupt[1])
    with pytest.raises(BlobMissing) as many:
        list(blobs.get_many(corrupt))
    assert str(many.value) == str(one.value) and "corrupt" in str(one.value)
    name, _, length = ats[1].rpartition(":")
    short = (items[1][0], f"{name.rpartition(':')[0]}:{10 ** 6}:{length}")
    with pytest.raises(BlobMissing) as one:
        blobs.get(*short)
    with pytest.raises(BlobMissing) as many:
        list(blobs.get_many([wanted[0], short]))
    assert str(many.value) == str(one.value) and "missing" in str(one.value)
    assert _open_fds() == before
