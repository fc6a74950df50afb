"""What a partial restore takes from an archive, as pure decisions: names read as SQL reads them, the table
of contents pg_restore lists, the entries each choice brings (by dependency, never by name), and the names
a suffix gives."""

from __future__ import annotations

import pytest

from pgwarden.engine.restore.renaming import final_names
from pgwarden.engine.restore.selection import (
    Selection,
    TableName,
    choose_tables,
    manifest_tables,
    parse_name,
    parse_toc,
    plan_entries,
    with_suffix,
)

# `pg_restore -l -v` of a real dump (PostgreSQL 18): a schema with a space, a table whose name has quotes,
# a space and a non-ASCII letter, an enum, serial and identity sequences, a trigger, a view, and foreign
# keys both ways between the odd table and the plain ones.
LISTING = """;
; Archive created at 2026-12-07 19:26:27 UTC
;     Format: CUSTOM
;
; Selected TOC Entries:
;
2604; 0 0 ENCODING - ENCODING
2605; 0 0 STDSTRINGS - STDSTRINGS
2606; 0 0 SEARCHPATH - SEARCHPATH
2607; 1262 16384 DATABASE - t_44f45c22a5 postgres
6; 2615 16385 SCHEMA - Sales Ops postgres
859; 1247 16387 TYPE public mood postgres
226; 1255 16430 FUNCTION public trg() postgres
223; 1259 16404 TABLE Sales Ops Ørders "x" Q postgres
;\tdepends on: 6 859
2608; 0 0 COMMENT Sales Ops TABLE "Ørders ""x"" Q" postgres
;\tdepends on: 223
222; 1259 16403 SEQUENCE Sales Ops Ørders "x" Q_id_seq postgres
;\tdepends on: 6 223
221; 1259 16392 TABLE public customers postgres
220; 1259 16391 SEQUENCE public customers_id_seq postgres
;\tdepends on: 221
2609; 0 0 SEQUENCE OWNED BY public customers_id_seq postgres
;\tdepends on: 220
224; 1259 16419 TABLE public refs postgres
225; 1259 16432 VIEW public v postgres
;\tdepends on: 221 221
2435; 2604 16395 DEFAULT public customers id postgres
;\tdepends on: 221 220 221
2600; 0 16404 TABLE DATA Sales Ops Ørders "x" Q postgres
;\tdepends on: 223
2598; 0 16392 TABLE DATA public customers postgres
;\tdepends on: 221
2601; 0 16419 TABLE DATA public refs postgres
;\tdepends on: 224
2610; 0 0 SEQUENCE SET Sales Ops Ørders "x" Q_id_seq postgres
;\tdepends on: 222
2611; 0 0 SEQUENCE SET public customers_id_seq postgres
;\tdepends on: 220
2442; 2606 16412 CONSTRAINT Sales Ops Ørders "x" Q Ørders "x" Q_pkey postgres
;\tdepends on: 223
2438; 2606 16402 CONSTRAINT public customers customers_name_key postgres
;\tdepends on: 221
2440; 2606 16400 CONSTRAINT public customers customers_pkey postgres
;\tdepends on: 221
2445; 2606 16424 CONSTRAINT public refs refs_pkey postgres
;\tdepends on: 224
2443; 1259 16418 INDEX Sales Ops Ørders idx postgres
;\tdepends on: 223
2448; 2620 16431 TRIGGER public customers t postgres
;\tdepends on: 226 221
2446; 2606 16413 FK CONSTRAINT Sales Ops Ørders "x" Q Ørders "x" Q_customer_id_fkey postgres
;\tdepends on: 2440 223 221
2447; 2606 16425 FK CONSTRAINT public refs refs_order_id_fkey postgres
;\tdepends on: 224 2442 223

"""
ODD = TableName("Sales Ops", 'Ørders "x" Q')
CUSTOMERS = TableName("public", "customers")
REFS = TableName("public", "refs")


def kinds(ids: list[int]) -> dict[int, str]:
    entries = {e.dump_id: e.desc for e in parse_toc(LISTING)}
    return {i: entries[i] for i in ids}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("orders", (None, "orders")),
        ("Orders", (None, "orders")),
        ("public.ORDERS", ("public", "orders")),
        ('"Sales Ops"."Quarterly Targets"', ("Sales Ops", "Quarterly Targets")),
        ('"Sales Ops"."Ørders ""x"" Q"', ("Sales Ops", 'Ørders "x" Q')),
        ("Ørders", (None, "Ørders")),
    ],
)
def test_names_are_read_as_sql_reads_them(text: str, expected: tuple[str | None, str]) -> None:
    assert parse_name(text) == expected


@pytest.mark.parametrize(
    "text", ["", "a.b.c", "orders; DROP TABLE x", "orders o", "(select 1)", "only orders"]
)
def test_what_is_no_table_name_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a table name"):
        parse_name(text)


def test_the_listing_is_read_with_multi_word_kinds_and_dependencies() -> None:
    entries = {e.dump_id: e for e in parse_toc(LISTING)}
    assert entries[2446].desc == "FK CONSTRAINT" and entries[2446].deps == (2440, 223, 221)
    assert entries[2609].desc == "SEQUENCE OWNED BY" and entries[2609].deps == (220,)
    assert entries[2600].desc == "TABLE DATA" and entries[2600].rest == 'Sales Ops Ørders "x" Q postgres'
    assert entries[223].is_table(ODD) and not entries[223].is_table(CUSTOMERS)
    assert entries[6].is_schema("Sales Ops")


def test_a_table_brings_its_parts_and_what_they_need_but_no_other_table() -> None:
    plan = plan_entries(parse_toc(LISTING), [CUSTOMERS], [])
    assert kinds([e.dump_id for e in plan.entries]) == {
        2604: "ENCODING",
        2605: "STDSTRINGS",
        2606: "SEARCHPATH",
        226: "FUNCTION",  # the trigger's function: needed, restored only in the scratch database
        221: "TABLE",
        220: "SEQUENCE",
        2609: "SEQUENCE OWNED BY",
        2435: "DEFAULT",
        2598: "TABLE DATA",
        2611: "SEQUENCE SET",
        2438: "CONSTRAINT",
        2440: "CONSTRAINT",
        2448: "TRIGGER",
    }
    assert plan.relations == [221] and plan.left_out == []


def test_a_foreign_key_comes_only_when_both_of_its_tables_do() -> None:
    alone = plan_entries(parse_toc(LISTING), [ODD], [])
    ids = {e.dump_id for e in alone.entries}
    assert {
        223,
        2600,
        222,
        2610,
        2442,
        2443,
        2608,
        6,
        859,
    } <= ids  # table, data, identity, key, index, comment
    assert 2446 not in ids and 2447 not in ids and 221 not in ids
    assert alone.left_out == [
        'FK CONSTRAINT Sales Ops Ørders "x" Q Ørders "x" Q_customer_id_fkey: it references a table not restored'
    ], "only the restored table's own key is said; refs' key into it is refs' business"
    both = plan_entries(parse_toc(LISTING), [ODD, CUSTOMERS], [])
    assert 2446 in {e.dump_id for e in both.entries} and both.left_out == []


def test_a_schema_brings_everything_in_it() -> None:
    plan = plan_entries(parse_toc(LISTING), [ODD], ["Sales Ops"])
    assert {6, 223, 2608, 222, 2600, 2610, 2442, 2443} <= {e.dump_id for e in plan.entries}


def test_the_list_for_pg_restore_keeps_the_archive_order() -> None:
    plan = plan_entries(parse_toc(LISTING), [CUSTOMERS], [])
    assert plan.listing().splitlines()[:4] == ["2604;", "2605;", "2606;", "226;"]


def test_tables_are_chosen_from_the_manifest_by_name_schema_or_both() -> None:
    available = list(
        manifest_tables(['"Sales Ops"."Quarterly Targets"', "public.orders", "audit.orders", "public.x"])
    )
    assert choose_tables(Selection.parse([], ["public.orders"]), available) == [TableName("public", "orders")]
    assert choose_tables(Selection.parse(['"Sales Ops"'], ["x"]), available) == [
        TableName("Sales Ops", "Quarterly Targets"),
        TableName("public", "x"),
    ]
    with pytest.raises(ValueError, match="several schemas"):
        choose_tables(Selection.parse([], ["orders"]), available)
    with pytest.raises(ValueError, match="no table"):
        choose_tables(Selection.parse([], ["public.nosuch"]), available)


@pytest.mark.parametrize(
    ("name", "suffix", "expected"),
    [
        ("orders", "_restored", "orders_restored"),
        ("x" * 63, "_r", "x" * 61 + "_r"),
        ("ü" * 40, "_r", "ü" * 30 + "_r"),  # 2 bytes a letter: cut on a character boundary
    ],
)
def test_a_suffix_fits_postgresqls_63_bytes(name: str, suffix: str, expected: str) -> None:
    assert with_suffix(name, suffix) == expected
    assert len(with_suffix(name, suffix).encode()) <= 63


def test_a_schema_restored_whole_takes_the_suffix_a_table_on_its_own_takes_it_itself() -> None:
    tables = [ODD, CUSTOMERS]
    assert final_names(tables, ["Sales Ops"], "_old") == {
        ODD: TableName("Sales Ops_old", 'Ørders "x" Q'),
        CUSTOMERS: TableName("public", "customers_old"),
    }
    assert final_names(tables, [], None) == {ODD: ODD, CUSTOMERS: CUSTOMERS}
