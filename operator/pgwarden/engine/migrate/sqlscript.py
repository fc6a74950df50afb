"""Split a migration script into statements with PostgreSQL's own parser and say how each one must run.

The parse tree is read as pglast's JSON (plain dicts), not as `pglast.ast` objects: building an object for
every node of every file was most of the time a run spent reading its files. A node whose field can hold
any type comes wrapped as `{"TypeName": {fields}}`; a field of one known type holds the fields directly.
Fields at their zero value (false, 0, absent) are left out, enumerations are spelled by name.
"""

from __future__ import annotations

import bisect
import difflib
import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pglast import parser
from pglast.enums.parsenodes import (
    AlterSubscriptionType,
    AlterTableType,
    DiscardMode,
    DropBehavior,
    ObjectType,
    ReindexObjectType,
)

from pgwarden.engine.migrate.rewrites import rewrite_reason
from pgwarden.engine.postgres.schema_diff import qualified_name
from pgwarden.errors import BadInput

Node = dict[str, Any]
"""One parse-tree node's fields by name, as in pglast's JSON."""

KNOWN_DIRECTIVES = ("no-transaction", "allow-destructive")

_COMMENT_TOKENS = frozenset({"SQL_COMMENT", "C_COMMENT"})
_SEMICOLON_TOKEN = "ASCII_59"
_DIRECTIVE = re.compile(r"pgwarden:(\S*)", re.IGNORECASE)

# Kinds whose generic spelling (class name split into words) is not the SQL a user writes.
_KIND_OVERRIDES = {
    "CreateStmt": "CREATE TABLE",
    "IndexStmt": "CREATE INDEX",
    "CreateTrigStmt": "CREATE TRIGGER",
    "CreateSeqStmt": "CREATE SEQUENCE",
    "AlterSeqStmt": "ALTER SEQUENCE",
    "CreatedbStmt": "CREATE DATABASE",
    "DropdbStmt": "DROP DATABASE",
    "ViewStmt": "CREATE VIEW",
    "CreateEnumStmt": "CREATE TYPE",
    "CompositeTypeStmt": "CREATE TYPE",
    "AlterEnumStmt": "ALTER TYPE",
    "CreateTableSpaceStmt": "CREATE TABLESPACE",
    "DropTableSpaceStmt": "DROP TABLESPACE",
    "VariableSetStmt": "SET",
    "VariableShowStmt": "SHOW",
    "RefreshMatViewStmt": "REFRESH MATERIALIZED VIEW",
    "CreatePLangStmt": "CREATE LANGUAGE",
    "GrantRoleStmt": "GRANT",
    "CommentStmt": "COMMENT",
    "RuleStmt": "CREATE RULE",
}
_OBJECT_WORDS = {"MATVIEW": "MATERIALIZED VIEW", "TABCONSTRAINT": "CONSTRAINT", "FDW": "FOREIGN DATA WRAPPER"}
_DROP_CASCADE_LOSES_COLUMNS = frozenset(
    {ObjectType.OBJECT_TYPE.name, ObjectType.OBJECT_DOMAIN.name, ObjectType.OBJECT_EXTENSION.name}
)
_DROP_LOSES_DATA = frozenset({ObjectType.OBJECT_TABLE.name, ObjectType.OBJECT_SCHEMA.name})
_WHOLE_DATABASE_REINDEX = frozenset(
    {
        ReindexObjectType.REINDEX_OBJECT_SCHEMA.name,
        ReindexObjectType.REINDEX_OBJECT_SYSTEM.name,
        ReindexObjectType.REINDEX_OBJECT_DATABASE.name,
    }
)
_SUBSCRIPTION_CHANGES_OUTSIDE_A_TRANSACTION = frozenset(
    {
        AlterSubscriptionType.ALTER_SUBSCRIPTION_REFRESH.name,
        AlterSubscriptionType.ALTER_SUBSCRIPTION_SET_PUBLICATION.name,
        AlterSubscriptionType.ALTER_SUBSCRIPTION_ADD_PUBLICATION.name,
        AlterSubscriptionType.ALTER_SUBSCRIPTION_DROP_PUBLICATION.name,
    }
)
# ALTER TYPE ... ADD VALUE runs in a transaction since PostgreSQL 12, so it is not listed.
_NEVER_IN_A_TRANSACTION = frozenset(
    {
        "CreatedbStmt",
        "DropdbStmt",
        "CreateTableSpaceStmt",
        "DropTableSpaceStmt",
        "AlterSystemStmt",
        "DropSubscriptionStmt",
    }
)
_FALSE_WORDS = frozenset({"false", "off", "no", "0"})


class ScriptError(BadInput):
    """A migration script that pgwarden refuses to run; the message says where and what to change."""

    def __init__(self, file: str, line: int, message: str) -> None:
        super().__init__(f"{file}:{line}: {message}")
        self.file = file
        self.line = line
        self.message = message


class ScriptSyntaxError(ScriptError):
    """PostgreSQL cannot parse the script; fix the SQL at the given line."""


class UnknownDirective(ScriptError):
    """A `-- pgwarden:` comment names no known directive; fix its spelling."""


class UnsupportedStatement(ScriptError):
    """A statement pgwarden cannot run from a migration (transaction control, COPY from the client)."""


@dataclass(frozen=True)
class Directives:
    """What a script asks of pgwarden in `-- pgwarden:<name>` comments."""

    no_transaction: bool = False
    allow_destructive: bool = False


@dataclass(frozen=True)
class Statement:
    """One statement of a script, its original text, and how it must run."""

    text: str
    line: int
    kind: str
    transactional: bool
    destructive: str | None
    concurrent_index: str | None = None
    """The index a CREATE INDEX CONCURRENTLY builds (schema-qualified when written so, quoted where it needs
    it), to drop if left INVALID."""
    concurrent_index_table: str | None = None
    """The table of that index, to find the INVALID index a failure leaves when the statement names none."""
    rewrites: str | None = None
    """Why it writes the whole table again under ACCESS EXCLUSIVE (engine.migrate.rewrites), for the lint."""
    strong_lock: bool = False
    """Whether it may take a lock stronger than ROW EXCLUSIVE (so readers or writers queue behind its wait): it
    then runs with the policy's short ddl_lock_timeout."""


@dataclass(frozen=True)
class Script:
    """A parsed script: its directives and statements."""

    name: str
    directives: Directives
    statements: tuple[Statement, ...]

    @property
    def runs_in_transaction(self) -> bool:
        """Whether the script can run inside a transaction block (no directive or statement says otherwise)."""
        return not self.directives.no_transaction and all(s.transactional for s in self.statements)


def parse_script(sql: str, name: str = "<script>") -> Script:
    """Parse a whole script: its directives and its statements, refusing what cannot run."""
    tree, tokens = _parse_and_scan(sql, name)
    statements = _statements(sql, name, tree, tokens)
    return Script(name=name, directives=_directives(sql, name, tokens), statements=statements)


def split_statements(sql: str, name: str = "<script>") -> tuple[Statement, ...]:
    """Split a script into classified statements, each with its exact text and 1-based line."""
    return _statements(sql, name, *_parse_and_scan(sql, name))


# Statements that lock existing tables in ROW EXCLUSIVE mode at most (reads, data changes, settings). A data
# change may wait for a row lock, which no reader queues behind: it keeps the run's longer lock_timeout.
_WEAK_LOCKS = frozenset(
    {
        "SelectStmt",
        "InsertStmt",
        "UpdateStmt",
        "DeleteStmt",
        "MergeStmt",
        "CopyStmt",
        "VariableSetStmt",
        "VariableShowStmt",
        "ExplainStmt",
        "NotifyStmt",
        "TransactionStmt",
    }
)


def takes_strong_lock(kind: str, node: Node) -> bool:
    """Whether a statement (of parse-tree type `kind`) may wait for a lock stronger than ROW EXCLUSIVE, which
    every later reader or writer of the table would queue behind. DO blocks and CALL may hold DDL, so they
    count; CONCURRENTLY statements wait for older transactions by design and block neither, so they do not
    (pure)."""
    if kind in _WEAK_LOCKS:
        return False
    if kind in ("IndexStmt", "DropStmt", "RefreshMatViewStmt"):
        return not node.get("concurrent", False)
    if kind == "ReindexStmt":
        return not _option_enabled(node.get("params"), "concurrently")
    if kind == "AlterTableStmt":
        commands = (_unwrap(wrapped) for wrapped in node.get("cmds", ()))
        return not any(
            command_kind == "AlterTableCmd"
            and command.get("def") is not None
            and _unwrap(command["def"])[0] == "PartitionCmd"
            and bool(_unwrap(command["def"])[1].get("concurrent", False))
            for command_kind, command in commands
        )
    return True


def parse_directives(sql: str, name: str = "<script>") -> Directives:
    """Read `-- pgwarden:<name>` comments anywhere in the script; an unknown name is an error."""
    try:
        tokens = parser.scan(sql)
    except parser.ParseError as error:
        raise _syntax_error(sql, name, error) from error
    return _directives(sql, name, tokens)


def _parse_and_scan(sql: str, name: str) -> tuple[list[Node], Sequence[Any]]:
    """The script's raw statements (parse tree as JSON) and its tokens, comments included: one scan each."""
    try:
        tree = json.loads(parser.parse_sql_json(sql)).get("stmts", [])
        tokens = parser.scan(sql)
    except parser.ParseError as error:
        raise _syntax_error(sql, name, error) from error
    return tree, tokens


def _statements(sql: str, name: str, tree: list[Node], tokens: Sequence[Any]) -> tuple[Statement, ...]:
    code_tokens = [t for t in tokens if t.name not in _COMMENT_TOKENS and t.name != _SEMICOLON_TOKEN]
    code_starts = [t.start for t in code_tokens]
    char_offset = _char_offsets(sql)
    statements = []
    for raw in tree:
        kind, node = _unwrap(raw["stmt"])
        location, length = raw.get("stmt_location", 0), raw.get("stmt_len", 0)
        start = char_offset(location)
        end = char_offset(location + length) if length else len(sql)
        # The statement ends where its last real token ends: trailing comments belong to no one.
        last = bisect.bisect_left(code_starts, end) - 1
        text = sql[start : code_tokens[last].end + 1] if last >= 0 else sql[start:end].rstrip()
        line = _line_of(sql, start)
        _refuse_unsupported(kind, node, name, line)
        index, table = _concurrent_index(kind, node)
        statements.append(
            Statement(
                text=text,
                line=line,
                kind=_kind(kind, node),
                transactional=not _refuses_transaction_block(kind, node),
                destructive="; ".join(_destructive_reasons(kind, node)) or None,
                concurrent_index=index,
                concurrent_index_table=table,
                strong_lock=takes_strong_lock(kind, node),
                rewrites=rewrite_reason(kind, node),
            )
        )
    return tuple(statements)


def _char_offsets(sql: str) -> Callable[[int], int]:
    """Character offset of a UTF-8 byte offset: the JSON tree counts bytes, Python strings characters."""
    if sql.isascii():
        return lambda offset: offset
    encoded = sql.encode("utf-8")
    return lambda offset: len(encoded[:offset].decode("utf-8"))


def _unwrap(wrapped: Node) -> tuple[str, Node]:
    """A node in a field of any type, `{"IndexStmt": {fields}}`, as its type and its fields."""
    ((kind, fields),) = wrapped.items()
    return kind, fields


def _directives(sql: str, name: str, tokens: Sequence[Any]) -> Directives:
    found = set()
    for token in tokens:
        if token.name not in _COMMENT_TOKENS:
            continue
        body = sql[token.start : token.end + 1]
        body = body[2:-2] if token.name == "C_COMMENT" else body[2:]
        match = _DIRECTIVE.match(body.strip())
        if match is None:
            continue
        directive = match.group(1).lower()
        if directive not in KNOWN_DIRECTIVES:
            raise UnknownDirective(name, _line_of(sql, token.start), _unknown_directive_message(directive))
        found.add(directive)
    return Directives(
        no_transaction="no-transaction" in found, allow_destructive="allow-destructive" in found
    )


def _unknown_directive_message(directive: str) -> str:
    known = ", ".join(f"pgwarden:{d}" for d in KNOWN_DIRECTIVES)
    close = difflib.get_close_matches(directive, KNOWN_DIRECTIVES, n=1)
    hint = f"; did you mean pgwarden:{close[0]}?" if close else ""
    return f"unknown directive pgwarden:{directive}; known directives: {known}{hint}"


def _syntax_error(sql: str, name: str, error: parser.ParseError) -> ScriptSyntaxError:
    message = str(error.args[0]) if error.args else str(error)
    location = error.args[1] if len(error.args) > 1 and isinstance(error.args[1], int) else len(sql)
    line = _line_of(sql, location)
    if sql[location : location + 1] == "\\":
        message += "; psql meta-commands (\\connect, \\copy, \\i, ...) cannot run in a migration"
    return ScriptSyntaxError(name, line, message)


def _line_of(sql: str, index: int) -> int:
    return sql.count("\n", 0, index) + 1


def _refuse_unsupported(kind: str, node: Node, name: str, line: int) -> None:
    if kind == "TransactionStmt":
        raise UnsupportedStatement(
            name,
            line,
            "remove transaction control (BEGIN, COMMIT, ROLLBACK, SAVEPOINT): pgwarden runs each migration "
            "in a transaction, or each statement on its own with -- pgwarden:no-transaction",
        )
    if kind == "CopyStmt" and "filename" not in node and not node.get("is_program"):
        raise UnsupportedStatement(
            name,
            line,
            "COPY FROM STDIN / TO STDOUT needs psql; write the rows as INSERT statements "
            "or COPY from a file on the server",
        )


def _kind(kind: str, node: Node) -> str:
    """The statement's command, as a user would name it: CREATE TABLE, DROP INDEX, DO, UPDATE."""
    if kind == "DropStmt":
        return f"DROP {_object_words(node.get('removeType'))}"
    if kind == "AlterTableStmt":
        return f"ALTER {_object_words(node.get('objtype'))}"
    if kind == "CreateFunctionStmt":
        return "CREATE PROCEDURE" if node.get("is_procedure") else "CREATE FUNCTION"
    if kind == "CreateTableAsStmt":
        matview = node.get("objtype") == ObjectType.OBJECT_MATVIEW.name
        return "CREATE MATERIALIZED VIEW" if matview else "CREATE TABLE AS"
    if kind == "VacuumStmt":
        return "VACUUM" if node.get("is_vacuumcmd") else "ANALYZE"
    if kind == "GrantStmt":
        return "GRANT" if node.get("is_grant") else "REVOKE"
    if kind == "RenameStmt":
        return f"ALTER {_object_words(node.get('renameType'))}"
    if kind in _KIND_OVERRIDES:
        return _KIND_OVERRIDES[kind]
    words = re.findall(r"[A-Z][a-z]*", kind.removesuffix("Stmt"))
    return " ".join(words).upper()


def _object_words(object_type: str | None) -> str:
    if object_type is None:
        return "OBJECT"
    word = object_type.removeprefix("OBJECT_")
    return _OBJECT_WORDS.get(word, word.replace("_", " "))


def _refuses_transaction_block(kind: str, node: Node) -> bool:
    """Whether PostgreSQL refuses this statement inside a transaction block (PreventInTransactionBlock)."""
    if kind in ("IndexStmt", "DropStmt"):
        return bool(node.get("concurrent"))
    if kind == "ReindexStmt":
        whole = node.get("kind") in _WHOLE_DATABASE_REINDEX
        return whole or _option_enabled(node.get("params"), "concurrently")
    if kind == "VacuumStmt":
        return bool(node.get("is_vacuumcmd"))
    if kind == "ClusterStmt":
        return "relation" not in node
    if kind == "AlterDatabaseStmt":
        return _option_enabled(node.get("options"), "tablespace")
    if kind == "DiscardStmt":
        return node.get("target") == DiscardMode.DISCARD_ALL.name
    if kind == "CreateSubscriptionStmt":
        return _option_value(node.get("options"), "create_slot") not in _FALSE_WORDS
    if kind == "AlterSubscriptionStmt":
        return node.get("kind") in _SUBSCRIPTION_CHANGES_OUTSIDE_A_TRANSACTION
    return kind in _NEVER_IN_A_TRANSACTION


def _option_value(options: list[Node] | None, name: str) -> str | None:
    """The value of option `name` in a list of `DefElem`, lower case; "true" when it is given bare."""
    for option in options or ():
        kind, fields = _unwrap(option)
        if kind == "DefElem" and fields.get("defname") == name:
            return _option_word(fields.get("arg"))
    return None


def _option_word(arg: Node | None) -> str:
    kind, value = _unwrap(arg) if arg is not None else ("", {})
    if kind == "String":
        return str(value.get("sval", "")).lower()
    if kind == "Boolean":
        return "true" if value.get("boolval") else "false"
    if kind == "Integer":
        return str(value.get("ival", 0))
    return "true"


def _option_enabled(options: list[Node] | None, name: str) -> bool:
    value = _option_value(options, name)
    return value is not None and value not in _FALSE_WORDS


def _destructive_reasons(kind: str, node: Node) -> Iterator[str]:
    """Short reasons why a statement can lose data; nothing for statements that cannot."""
    if kind == "DropStmt":
        names = ", ".join(_object_name(o) for o in node.get("objects", ()))
        dropped = node.get("removeType")
        if dropped in _DROP_LOSES_DATA:
            yield f"DROP {_object_words(dropped)} {names}"
        elif (
            dropped in _DROP_CASCADE_LOSES_COLUMNS and node.get("behavior") == DropBehavior.DROP_CASCADE.name
        ):
            yield f"DROP {_object_words(dropped)} {names} CASCADE (drops the columns that use it)"
    elif kind == "DropdbStmt":
        yield f"DROP DATABASE {node.get('dbname')}"
    elif kind == "DropOwnedStmt":
        yield "DROP OWNED (drops every table the roles own)"
    elif kind == "TruncateStmt":
        yield "TRUNCATE " + ", ".join(_relation_name(_unwrap(r)[1]) for r in node.get("relations", ()))
    elif kind == "AlterTableStmt":
        yield from _alter_table_losses(node)
    for dml_kind, dml in _executed_dml(kind, node):
        if "whereClause" not in dml:
            verb = "DELETE" if dml_kind == "DeleteStmt" else "UPDATE"
            yield f"{verb} without WHERE on {_relation_name(dml.get('relation'))}"


def _alter_table_losses(node: Node) -> Iterator[str]:
    """The columns an ALTER TABLE drops or retypes."""
    table = _relation_name(node.get("relation"))
    for wrapped in node.get("cmds", ()):
        kind, command = _unwrap(wrapped)
        if kind != "AlterTableCmd":
            continue
        if command.get("subtype") == AlterTableType.AT_DropColumn.name:
            yield f"DROP COLUMN {table}.{command.get('name')}"
        elif command.get("subtype") == AlterTableType.AT_AlterColumnType.name:
            yield f"column type change {table}.{command.get('name')}"


def _executed_dml(kind: str, node: Node) -> Iterator[tuple[str, Node]]:
    """DELETE and UPDATE that run now: the statement itself, its WITH queries and EXPLAIN ANALYZE.

    Rule actions and SQL-standard function bodies are parsed too but only run later, so they are skipped.
    """
    if kind in ("DeleteStmt", "UpdateStmt"):
        yield kind, node
    if kind == "ExplainStmt":
        if _option_enabled(node.get("options"), "analyze") and "query" in node:
            yield from _executed_dml(*_unwrap(node["query"]))
        return
    if kind == "SelectStmt":
        for part in (node.get("larg"), node.get("rarg")):
            if part is not None:
                yield from _executed_dml("SelectStmt", part)
    for wrapped in (node.get("withClause") or {}).get("ctes", ()):
        cte_kind, cte = _unwrap(wrapped)
        if cte_kind == "CommonTableExpr" and "ctequery" in cte:
            yield from _executed_dml(*_unwrap(cte["ctequery"]))


def _concurrent_index(kind: str, node: Node) -> tuple[str | None, str | None]:
    """The index a CREATE INDEX CONCURRENTLY builds and its table, quoted where they need it (so
    `to_regclass` and a pasted DROP INDEX read them back exactly)."""
    relation = node.get("relation")
    if kind != "IndexStmt" or not node.get("concurrent") or relation is None:
        return None, None
    schema, table = relation.get("schemaname"), relation.get("relname")
    table_name = qualified_name(*(part for part in (schema, table) if part))
    if "idxname" not in node:
        return None, table_name
    # An index always lives in its table's schema.
    return qualified_name(*(part for part in (schema, node["idxname"]) if part)), table_name


def _relation_name(relation: Node | None) -> str:
    """`schema.table` of a RangeVar's fields, as written."""
    if relation is None:
        return "?"
    return ".".join(p for p in (relation.get("schemaname"), relation.get("relname")) if p)


def _object_name(wrapped: Node) -> str:
    """A dropped object's name as written: a String, a dotted List of them, or a TypeName."""
    kind, fields = _unwrap(wrapped)
    if kind == "String":
        return str(fields.get("sval", ""))
    if kind == "List":
        return ".".join(_object_name(part) for part in fields.get("items", ()))
    if kind == "TypeName":
        return ".".join(_object_name(part) for part in fields.get("names", ()))
    return "?"
