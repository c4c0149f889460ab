"""StateWriter splits big write batches by hotel so one apply never holds the event loop long."""

from galleryrank.consumer.state.writer import split_by_hotel


def test_chunks_hold_at_most_n_hotels_and_keep_each_hotels_changes_together():
    batch = [(f"h{i % 7}", i) for i in range(30)]
    chunks = split_by_hotel(batch, 3)
    assert [len({h for h, _ in c}) for c in chunks] == [3, 3, 1]
    assert sorted(x for c in chunks for x in c) == sorted(batch)  # nothing lost or duplicated
    for c in chunks:  # one hotel's changes keep their order inside one chunk
        for h in {h for h, _ in c}:
            assert [i for hh, i in c if hh == h] == [i for hh, i in batch if hh == h]
            assert all(h not in {hh for hh, _ in other} for other in chunks if other is not c)


def test_empty_batch_has_no_chunks():
    assert split_by_hotel([], 32) == []
