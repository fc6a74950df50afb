"""S3 part sizes: chosen from the database's estimated size, never more than 10,000 parts, never < 5 MiB."""

import pytest

from pgwarden.storage.s3 import (
    DEFAULT_PART_SIZE,
    MAX_PART_SIZE,
    MAX_PARTS,
    MIN_PART_SIZE,
    MiB,
    capacity,
    part_size_for,
    plan_part_size,
)

GiB = 1024 * MiB
TiB = 1024 * GiB


@pytest.mark.parametrize("estimate", [None, 0, 1, 10 * MiB, GiB, 50 * GiB, TiB, 5 * TiB])
def test_planned_parts_are_whole_mebibytes_of_at_least_5_mib(estimate: int | None) -> None:
    size = plan_part_size(estimate)
    assert MIN_PART_SIZE <= size <= MAX_PART_SIZE
    assert size % MiB == 0


def test_small_databases_use_the_default_part_size() -> None:
    assert plan_part_size(None) == DEFAULT_PART_SIZE
    assert plan_part_size(100 * MiB) == DEFAULT_PART_SIZE


@pytest.mark.parametrize("estimate", [GiB, 100 * GiB, TiB, 4 * TiB])
def test_a_dump_three_times_the_estimate_fits_in_half_the_part_limit(estimate: int) -> None:
    size = plan_part_size(estimate)
    assert 3 * estimate <= size * MAX_PARTS // 2


def test_part_size_grows_as_part_numbers_approach_the_limit() -> None:
    planned = 8 * MiB
    sizes = [part_size_for(n, planned) for n in range(1, MAX_PARTS + 1)]
    assert sizes[0] == sizes[4999] == planned
    assert sizes[5000] == 2 * planned
    assert sizes[-1] == 32 * planned
    assert sizes == sorted(sizes)


@pytest.mark.parametrize("estimate", [None, 10 * MiB, 100 * GiB, TiB])
def test_ten_thousand_parts_hold_at_least_ten_times_the_estimate(estimate: int | None) -> None:
    assert capacity(plan_part_size(estimate)) >= 10 * (estimate or 0)


def test_no_part_exceeds_the_s3_maximum() -> None:
    assert part_size_for(MAX_PARTS, MAX_PART_SIZE) == MAX_PART_SIZE
    assert part_size_for(MAX_PARTS, GiB) == MAX_PART_SIZE
