"""Our stream compression: every algorithm round-trips, and a truncated stream is noticed."""

import os

import pytest

from pgwarden.engine.backup.compression import compressor, decompressor, parse_compression

DATA = os.urandom(300_000) + b"pgwarden " * 200_000


def roundtrip(spec: str, data: bytes, chunk: int = 65536) -> tuple[bytes, bytes]:
    parsed = parse_compression(spec)
    codec = compressor(parsed)
    packed = (
        b"".join(codec.compress(data[i : i + chunk]) for i in range(0, len(data), chunk)) + codec.finish()
    )
    reader = decompressor(parsed)
    out = b"".join(reader.decompress(packed[i : i + 4096]) for i in range(0, len(packed), 4096))
    return packed, out + reader.finish()


@pytest.mark.parametrize("spec", ["zstd", "zstd:1", "zstd:19", "lz4", "lz4:9", "gzip", "gzip:1", "none"])
def test_every_algorithm_round_trips_a_stream(spec: str) -> None:
    packed, out = roundtrip(spec, DATA)
    assert out == DATA
    if spec != "none":
        assert len(packed) < len(DATA)


def test_an_empty_stream_round_trips() -> None:
    for spec in ("zstd", "lz4", "gzip", "none"):
        assert roundtrip(spec, b"")[1] == b""


@pytest.mark.parametrize("spec", ["zstd", "lz4", "gzip"])
def test_a_truncated_stream_is_refused(spec: str) -> None:
    packed, _ = roundtrip(spec, DATA)
    reader = decompressor(parse_compression(spec))
    reader.decompress(packed[: len(packed) // 2])
    with pytest.raises(ValueError, match="ends before its end marker"):
        reader.finish()


@pytest.mark.parametrize(
    ("spec", "text"),
    [("zstd", "zstd:3"), ("ZSTD:5", "zstd:5"), ("gzip", "gzip:6"), ("lz4", "lz4"), ("none", "none")],
)
def test_specs_are_normalised(spec: str, text: str) -> None:
    assert str(parse_compression(spec)) == text


@pytest.mark.parametrize("spec", ["brotli", "zstd:0", "zstd:23", "gzip:10", "none:1", "zstd:x", ""])
def test_bad_specs_are_refused_naming_the_accepted_forms(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_compression(spec)


def test_parallel_gzip_is_plain_gzip_that_any_gunzip_reads() -> None:
    import gzip

    packed, _ = roundtrip("gzip:6", DATA * 8)  # several 4 MiB blocks, compressed in parallel
    assert gzip.decompress(packed) == DATA * 8
