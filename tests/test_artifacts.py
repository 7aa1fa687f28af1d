"""Unreadable artifacts: found by their first and last bytes and footer, or when read; deleted with a message that
names the file and the fix."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from biobench import artifacts


def truncate(path: Path) -> None:
    """What a full disk or a killed copy leaves: the first half of the file."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def damage_inside(path: Path) -> None:
    """Zero the first page header, keeping the file's size, first and last bytes and footer."""
    data = bytearray(path.read_bytes())
    data[4:68] = bytes(64)
    path.write_bytes(bytes(data))


@pytest.fixture
def parquet(tmp_path) -> Path:
    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({"x": np.arange(1000), "y": np.random.default_rng(0).random(1000)}), path)
    return path


def test_a_whole_file_has_no_problem(parquet):
    assert artifacts.parquet_problem(parquet) is None and artifacts.damage(parquet) is None


@pytest.mark.parametrize(("spoil", "problem"), [
    (truncate, "it does not end as a parquet file does: it was cut short"),
    (lambda p: p.write_bytes(b"x" + p.read_bytes()[1:]), "it does not start as a parquet file does"),
    (lambda p: p.write_bytes(b"PAR1"), "4 bytes, too short for a parquet file"),
    (lambda p: p.write_bytes(b"PAR1" + bytes(100) + b"PAR1"), "its footer is damaged"),
])
def test_the_cheap_check_finds_a_spoiled_file(parquet, spoil, problem):
    spoil(parquet)
    assert artifacts.parquet_problem(parquet).startswith(problem)


def test_damage_inside_shows_only_when_the_file_is_read(parquet):
    damage_inside(parquet)
    assert artifacts.parquet_problem(parquet) is None
    assert "deserialize" in artifacts.damage(parquet)


@pytest.mark.parametrize("spoil", [truncate, damage_inside])
def test_a_reader_empties_a_damaged_file_and_says_how_to_rebuild_it(parquet, spoil):
    spoil(parquet)
    with pytest.raises(artifacts.UnreadableArtifact) as error:
        artifacts.read_parquet(parquet, pq.read_table)
    assert str(error.value).startswith(f"{parquet} cannot be read (")
    assert str(error.value).endswith("biobench emptied it, and re-running `snakemake --cores 8` rebuilds it and what "
                                     "was made from it")
    assert parquet.read_bytes() == b""  # which the next run's check finds and deletes
    assert artifacts.discard_run({str(parquet): []}) and not parquet.exists()


def test_a_reader_keeps_the_file_on_an_error_of_the_system(tmp_path):
    with pytest.raises(FileNotFoundError):
        artifacts.read_parquet(tmp_path / "absent.parquet", pq.read_table)


def test_discard_unreadable_deletes_only_the_spoiled_files_that_exist(tmp_path, parquet):
    spoiled = tmp_path / "b.parquet"
    spoiled.write_bytes(parquet.read_bytes())
    truncate(spoiled)
    discarded = artifacts.discard_unreadable([parquet, spoiled, tmp_path / "absent.parquet"], fix="the run rebuilds it")
    assert [str(e) for e in discarded] == [f"{spoiled} cannot be read (it does not end as a parquet file does: it "
                                           "was cut short); biobench deleted it, and the run rebuilds it"]
    assert parquet.exists() and not spoiled.exists()


def test_database_check_tells_duckdb_files_from_others(tmp_path, parquet):
    db = tmp_path / "a.duckdb"
    duckdb.connect(str(db)).close()
    assert artifacts.database_problem(db) is None
    assert artifacts.database_problem(parquet) == "it is not a DuckDB database file"
