"""FsBlobs packs (labd.blobs): put_many appends a group of blobs to this process's pack file with one fdatasync and
returns where each went; get(digest, at) reads them back checked. Real files under tmp_path, no mocks."""

from __future__ import annotations

import hashlib
import os
import resource
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from labd.blobs import PACK_HEADER, PACK_MAGIC, BlobMissing, FsBlobs


def _item(data: bytes) -> tuple[str, bytes]:
    return hashlib.sha256(data).hexdigest(), data


def _packs(root: Path) -> list[Path]:
    return sorted((root / "packs").glob("*.pack"))


def _scan(pack: Path) -> Iterator[tuple[str, int, int]]:
    """(digest, offset of the data, length) of each record, read by the format alone."""
    raw = pack.read_bytes()
    pos = 0
    while pos < len(raw):
        magic, digest, length = PACK_HEADER.unpack_from(raw, pos)
        assert magic == PACK_MAGIC
        yield digest.hex(), pos + PACK_HEADER.size, length
        pos += PACK_HEADER.size + length
    assert pos == len(raw)


@pytest.fixture
def blobs(tmp_path: Path) -> Iterator[FsBlobs]:
    store = FsBlobs(tmp_path / "blobs")
    yield store
    store.close()


def test_put_many_appends_a_group_to_one_pack_and_get_reads_each_back(blobs: FsBlobs) -> None:
    datas = [b"", b"a", os.urandom(4096), b"pilotlab" * 10_000, os.urandom(1 << 20)]
    items: list[tuple[str, bytes | memoryview]] = [_item(x) for x in datas]
    items[2] = (items[2][0], memoryview(bytearray(datas[2])))  # memoryviews are blobs too
    ats = blobs.put_many(items)
    assert len(ats) == len(datas) and len(set(ats)) == len(ats)
    [pack] = _packs(blobs.root)
    assert pack.stat().st_size == sum(PACK_HEADER.size + len(x) for x in datas)
    for (digest, _), at, data in zip(items, ats, datas, strict=True):
        name, offset, length = at.split(":")
        assert name == f"packs/{pack.name}" and int(length) == len(data)
        assert pack.read_bytes()[int(offset):int(offset) + len(data)] == data
        assert blobs.get(digest, at) == data
        with blobs.open(digest, at) as f:
            assert f.read() == data
        assert not blobs.exists(digest)  # exists is per-file: a packed blob is found through its at
    assert blobs.put_many([]) == []
    more = blobs.put_many([_item(b"second group")])
    assert _packs(blobs.root) == [pack]  # the same process appends to the same pack
    assert blobs.get(_item(b"second group")[0], more[0]) == b"second group"


def test_records_describe_themselves(blobs: FsBlobs) -> None:
    items = [_item(os.urandom(n)) for n in (0, 1, 100, 5000)]
    ats = blobs.put_many(items[:2])
    ats += blobs.put_many(items[2:])
    [pack] = _packs(blobs.root)
    assert [(digest, f"packs/{pack.name}:{offset}:{length}") for digest, offset, length in _scan(pack)] == \
        [(digest, at) for (digest, _), at in zip(items, ats, strict=True)]


def test_a_full_pack_is_left_for_a_new_one_and_a_big_blob_has_a_pack_of_its_own(tmp_path: Path) -> None:
    blobs = FsBlobs(tmp_path / "blobs", pack_bytes=1000)
    small = [_item(os.urandom(200)) for _ in range(10)]  # 248 bytes a record: 4 to a pack
    big = _item(os.urandom(5000))
    items = small[:5] + [big] + small[5:]
    ats = blobs.put_many(items)
    packs = _packs(blobs.root)
    assert len(packs) == 5  # 4 small, 1 small, the big one, 4 small, 1 small
    assert all(p.stat().st_size <= 1000 for p in packs if p.stat().st_size != PACK_HEADER.size + 5000)
    by_pack: dict[str, list[str]] = {}
    for (digest, _), at in zip(items, ats, strict=True):
        by_pack.setdefault(at.partition(":")[0], []).append(digest)
    assert sorted(len(v) for v in by_pack.values()) == [1, 1, 1, 4, 4]
    assert [big[0]] in by_pack.values()
    assert [p.stat().st_size for p in packs].count(PACK_HEADER.size + 5000) == 1
    for (digest, data), at in zip(items, ats, strict=True):
        assert blobs.get(digest, at) == data
    blobs.close()
    blobs.close()  # idempotent
    later = blobs.put_many([_item(b"after close")])  # a closed store starts a new pack when used again
    assert len(_packs(blobs.root)) == 6 and blobs.get(_item(b"after close")[0], later[0]) == b"after close"
    blobs.close()


def test_a_damaged_pack_or_a_bad_location_is_blob_missing_in_one_line(blobs: FsBlobs) -> None:
    items = [_item(os.urandom(300)) for _ in range(3)]
    ats = blobs.put_many(items)
    [pack] = _packs(blobs.root)
    _, offset, _ = ats[1].split(":")
    raw = bytearray(pack.read_bytes())
    raw[int(offset) + 10] ^= 0xFF
    pack.write_bytes(raw)
    assert blobs.get(items[0][0], ats[0]) == items[0][1]
    with pytest.raises(BlobMissing, match="corrupt: it hashes to") as caught:
        blobs.get(items[1][0], ats[1])
    assert "\n" not in str(caught.value) and str(pack) in str(caught.value)
    with pytest.raises(BlobMissing, match="corrupt"):
        blobs.get(items[0][0], ats[1])  # the right bytes under another name: corrupt too
    os.truncate(pack, pack.stat().st_size - 1)
    with pytest.raises(BlobMissing, match="missing") as caught:
        blobs.get(items[2][0], ats[2])
    assert "\n" not in str(caught.value)
    digest = items[0][0]
    name = pack.name
    for bad in ("../x.pack:0:1", "packs/zz.pack:0:1", f"packs/{name}:-1:3", "/etc/passwd:0:1",
                f"packs/../packs/{name}:0:1", f"/packs/{name}:0:1", f"packs/{name}:0", f"packs/{name}:0:1:2",
                f"packs/{name}:+1:3", f"packs/{name}:01:3", f"packs/{name}:0:1\n", f"packs/{name}:0:1 ",
                f"{name}:0:1", f"packs/{name[:-5]}.blob:0:1", f"packs/{name}:{'9' * 30}:1"):
        with pytest.raises(BlobMissing) as caught:
            blobs.get(digest, bad)
        assert "\n" not in str(caught.value), bad
        with pytest.raises(BlobMissing):
            blobs.open(digest, bad)
    with pytest.raises(BlobMissing, match="missing"):
        blobs.get(digest, f"packs/{'0' * 32}.pack:48:300")  # no such pack
    with pytest.raises(BlobMissing, match="missing"):
        blobs.get(digest, f"packs/{name}:{2**62}:{2**62}")  # far past its end
    with pytest.raises(ValueError):
        blobs.get("../etc/passwd", ats[0])
    with pytest.raises(ValueError):
        blobs.put_many([("not a digest", b"x")])


def test_two_stores_on_one_folder_write_packs_of_their_own_and_read_each_others(tmp_path: Path) -> None:
    one, two = FsBlobs(tmp_path / "blobs"), FsBlobs(tmp_path / "blobs")
    a, b = _item(b"from one"), _item(b"from two")
    at_a = one.put_many([a])[0]
    at_b = two.put_many([b])[0]
    assert at_a.partition(":")[0] != at_b.partition(":")[0]
    assert len(_packs(tmp_path / "blobs")) == 2
    assert two.get(a[0], at_a) == a[1] and one.get(b[0], at_b) == b[1]
    one.close()
    two.close()


def test_threads_putting_at_once_never_overlap(blobs: FsBlobs) -> None:
    results: list[list[tuple[str, bytes, str]]] = [[] for _ in range(8)]
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def work(k: int) -> None:
        try:
            items = [_item(f"thread {k} blob {i} ".encode() * (1 + i * 7)) for i in range(50)]
            start.wait()
            ats = blobs.put_many(items)
            results[k] = [(digest, data, at) for (digest, data), at in zip(items, ats, strict=True)]
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    every = [r for rs in results for r in rs]
    assert len(every) == 400 and len({at for _, _, at in every}) == 400
    for digest, data, at in every:
        assert blobs.get(digest, at) == data
    [pack] = _packs(blobs.root)
    assert sorted(d for d, _, _ in _scan(pack)) == sorted(d for d, _, _ in every)  # nothing else, nothing torn


def test_a_failed_write_raises_its_oserror_and_abandons_the_pack(blobs: FsBlobs) -> None:
    """A file-size limit (RLIMIT_FSIZE) makes the kernel refuse the write part-way (EFBIG), as a full disk would
    (ENOSPC): the OSError surfaces unchanged, the torn pack is never written to again, the next group starts a new
    pack, and what was stored before stays readable."""
    first = _item(os.urandom(1000))
    at_first = blobs.put_many([first])[0]
    [torn] = _packs(blobs.root)
    limit = torn.stat().st_size + 3000
    old = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    group = [_item(os.urandom(2000)) for _ in range(3)]
    try:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, old[1]))
        with pytest.raises(OSError) as caught:
            blobs.put_many(group)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old)
        signal.signal(signal.SIGXFSZ, old_handler)
    assert type(caught.value) is OSError and caught.value.errno is not None
    assert torn.stat().st_size == limit  # the kernel wrote what it could: a torn tail nobody references
    assert blobs.get(first[0], at_first) == first[1]
    ats = blobs.put_many(group)  # room again: the resend goes to a new pack
    assert len(_packs(blobs.root)) == 2 and all(not at.startswith(f"packs/{torn.name}") for at in ats)
    for (digest, data), at in zip(group, ats, strict=True):
        assert blobs.get(digest, at) == data
    assert torn.stat().st_size == limit


def test_a_pack_folder_that_cannot_be_made_raises_and_returns_nothing(tmp_path: Path) -> None:
    (tmp_path / "blobs").mkdir()
    (tmp_path / "blobs" / "packs").write_bytes(b"not a folder")
    blobs = FsBlobs(tmp_path / "blobs")
    with pytest.raises(OSError):
        blobs.put_many([_item(b"x")])
    (tmp_path / "blobs" / "packs").unlink()
    [at] = blobs.put_many([_item(b"x")])  # the folder can be made now: stored
    assert blobs.get(_item(b"x")[0], at) == b"x"
    blobs.close()


def test_a_blob_per_file_is_still_put_and_read_by_digest_alone(blobs: FsBlobs) -> None:
    data = b"one file" * 100
    digest = blobs.put(data)
    assert blobs.exists(digest) and (blobs.root / digest[:2] / digest[2:]).read_bytes() == data
    assert blobs.get(digest) == data and blobs.get(digest, "") == data
    with blobs.open(digest, "") as f:
        assert f.read() == data
    assert not (blobs.root / "packs").exists()  # put writes no pack
    with pytest.raises(BlobMissing, match="missing"):
        blobs.get("0" * 64, "")


def test_a_group_of_more_records_than_one_writev_takes_is_written_whole(blobs: FsBlobs) -> None:
    items = [_item(i.to_bytes(4, "little") * (i % 5)) for i in range(3000)]  # 6000 buffers, some empty
    ats = blobs.put_many(items)
    [pack] = _packs(blobs.root)
    assert [d for d, _, _ in _scan(pack)] == [d for d, _ in items]
    for (digest, data), at in zip(items, ats, strict=True):
        assert blobs.get(digest, at) == data
