"""Split a migration script into statements with PostgreSQL's own parser and say how each one must run."""

from __future__ import annotations

import bisect
import difflib
import re
from collections.abc import Iterator
from dataclasses import dataclass

from pglast import ast, parser
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
    {ObjectType.OBJECT_TYPE, ObjectType.OBJECT_DOMAIN, ObjectType.OBJECT_EXTENSION}
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
    statements = split_statements(sql, name)
    return Script(name=name, directives=parse_directives(sql, name), statements=statements)


def split_statements(sql: str, name: str = "<script>") -> tuple[Statement, ...]:
    """Split a script into classified statements, each with its exact text and 1-based line."""
    try:
        raw_statements = parser.parse_sql(sql)
        tokens = parser.scan(sql)
    except parser.ParseError as error:
        raise _syntax_error(sql, name, error) from error
    code_tokens = [t for t in tokens if t.name not in _COMMENT_TOKENS and t.name != _SEMICOLON_TOKEN]
    code_starts = [t.start for t in code_tokens]
    statements = []
    for raw in raw_statements:
        node = raw.stmt
        assert node is not None
        start = raw.stmt_location or 0
        end = start + raw.stmt_len if raw.stmt_len else len(sql)
        # The statement ends where its last real token ends: trailing comments belong to no one.
        last = bisect.bisect_left(code_starts, end) - 1
        text = sql[start : code_tokens[last].end + 1] if last >= 0 else sql[start:end].rstrip()
        line = _line_of(sql, start)
        _refuse_unsupported(node, name, line)
        index, table = _concurrent_index(node)
        statements.append(
            Statement(
                text=text,
                line=line,
                kind=_kind(node),
                transactional=not _refuses_transaction_block(node),
                destructive="; ".join(_destructive_reasons(node)) or None,
                concurrent_index=index,
                concurrent_index_table=table,
                strong_lock=takes_strong_lock(node),
                rewrites=rewrite_reason(node),
            )
        )
    return tuple(statements)


# Statements that lock existing tables in ROW EXCLUSIVE mode at most (reads, data changes, settings). A data
# change may wait for a row lock, which no reader queues behind: it keeps the run's longer lock_timeout.
_WEAK_LOCKS = (
    ast.SelectStmt,
    ast.InsertStmt,
    ast.UpdateStmt,
    ast.DeleteStmt,
    ast.MergeStmt,
    ast.CopyStmt,
    ast.VariableSetStmt,
    ast.VariableShowStmt,
    ast.ExplainStmt,
    ast.NotifyStmt,
    ast.TransactionStmt,
)


def takes_strong_lock(node: ast.Node) -> bool:
    """Whether a statement may wait for a lock stronger than ROW EXCLUSIVE, which every later reader or writer
    of the table would queue behind. DO blocks and CALL may hold DDL, so they count; CONCURRENTLY statements
    wait for older transactions by design and block neither, so they do not (pure)."""
    if isinstance(node, _WEAK_LOCKS):
        return False
    if isinstance(node, ast.IndexStmt | ast.DropStmt):
        return not node.concurrent
    if isinstance(node, ast.ReindexStmt):
        return not _option_enabled(node.params, "concurrently")
    if isinstance(node, ast.RefreshMatViewStmt):
        return not node.concurrent
    if isinstance(node, ast.AlterTableStmt):
        return not any(
            isinstance(cmd, ast.AlterTableCmd)
            and isinstance(cmd.def_, ast.PartitionCmd)
            and bool(cmd.def_.concurrent)
            for cmd in node.cmds or ()
        )
    return True


def parse_directives(sql: str, name: str = "<script>") -> Directives:
    """Read `-- pgwarden:<name>` comments anywhere in the script; an unknown name is an error."""
    try:
        tokens = parser.scan(sql)
    except parser.ParseError as error:
        raise _syntax_error(sql, name, error) from error
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


def _refuse_unsupported(node: ast.Node, name: str, line: int) -> None:
    if isinstance(node, ast.TransactionStmt):
        raise UnsupportedStatement(
            name,
            line,
            "remove transaction control (BEGIN, COMMIT, ROLLBACK, SAVEPOINT): pgwarden runs each migration "
            "in a transaction, or each statement on its own with -- pgwarden:no-transaction",
        )
    if isinstance(node, ast.CopyStmt) and node.filename is None and not node.is_program:
        raise UnsupportedStatement(
            name,
            line,
            "COPY FROM STDIN / TO STDOUT needs psql; write the rows as INSERT statements "
            "or COPY from a file on the server",
        )


def _kind(node: ast.Node) -> str:
    """The statement's command, as a user would name it: CREATE TABLE, DROP INDEX, DO, UPDATE."""
    if isinstance(node, ast.DropStmt):
        return f"DROP {_object_words(node.removeType)}"
    if isinstance(node, ast.AlterTableStmt):
        return f"ALTER {_object_words(node.objtype)}"
    if isinstance(node, ast.CreateFunctionStmt):
        return "CREATE PROCEDURE" if node.is_procedure else "CREATE FUNCTION"
    if isinstance(node, ast.CreateTableAsStmt):
        return "CREATE MATERIALIZED VIEW" if node.objtype == ObjectType.OBJECT_MATVIEW else "CREATE TABLE AS"
    if isinstance(node, ast.VacuumStmt):
        return "VACUUM" if node.is_vacuumcmd else "ANALYZE"
    if isinstance(node, ast.GrantStmt):
        return "GRANT" if node.is_grant else "REVOKE"
    if isinstance(node, ast.RenameStmt):
        return f"ALTER {_object_words(node.renameType)}"
    class_name = type(node).__name__
    if class_name in _KIND_OVERRIDES:
        return _KIND_OVERRIDES[class_name]
    words = re.findall(r"[A-Z][a-z]*", class_name.removesuffix("Stmt"))
    return " ".join(words).upper()


def _object_words(object_type: ObjectType | None) -> str:
    if object_type is None:
        return "OBJECT"
    word = object_type.name.removeprefix("OBJECT_")
    return _OBJECT_WORDS.get(word, word.replace("_", " "))


def _refuses_transaction_block(node: ast.Node) -> bool:
    """Whether PostgreSQL refuses this statement inside a transaction block (PreventInTransactionBlock)."""
    if isinstance(node, ast.IndexStmt | ast.DropStmt):
        return bool(node.concurrent)
    if isinstance(node, ast.ReindexStmt):
        whole = node.kind in {
            ReindexObjectType.REINDEX_OBJECT_SCHEMA,
            ReindexObjectType.REINDEX_OBJECT_SYSTEM,
            ReindexObjectType.REINDEX_OBJECT_DATABASE,
        }
        return whole or _option_enabled(node.params, "concurrently")
    if isinstance(node, ast.VacuumStmt):
        return bool(node.is_vacuumcmd)
    if isinstance(node, ast.ClusterStmt):
        return node.relation is None
    if isinstance(node, ast.AlterDatabaseStmt):
        return _option_enabled(node.options, "tablespace")
    if isinstance(node, ast.DiscardStmt):
        return node.target == DiscardMode.DISCARD_ALL
    if isinstance(node, ast.CreateSubscriptionStmt):
        return _option_value(node.options, "create_slot") not in _FALSE_WORDS
    if isinstance(node, ast.AlterSubscriptionStmt):
        return node.kind in {
            AlterSubscriptionType.ALTER_SUBSCRIPTION_REFRESH,
            AlterSubscriptionType.ALTER_SUBSCRIPTION_SET_PUBLICATION,
            AlterSubscriptionType.ALTER_SUBSCRIPTION_ADD_PUBLICATION,
            AlterSubscriptionType.ALTER_SUBSCRIPTION_DROP_PUBLICATION,
        }
    # ALTER TYPE ... ADD VALUE runs in a transaction since PostgreSQL 12, so it is not listed.
    return isinstance(
        node,
        ast.CreatedbStmt
        | ast.DropdbStmt
        | ast.CreateTableSpaceStmt
        | ast.DropTableSpaceStmt
        | ast.AlterSystemStmt
        | ast.DropSubscriptionStmt,
    )


def _option_value(options: tuple[ast.Node, ...] | None, name: str) -> str | None:
    for option in options or ():
        if isinstance(option, ast.DefElem) and option.defname == name:
            arg = option.arg
            if isinstance(arg, ast.String):
                return str(arg.sval).lower()
            if isinstance(arg, ast.Boolean):
                return "true" if arg.boolval else "false"
            if isinstance(arg, ast.Integer):
                return str(arg.ival)
            return "true"
    return None


def _option_enabled(options: tuple[ast.Node, ...] | None, name: str) -> bool:
    value = _option_value(options, name)
    return value is not None and value not in _FALSE_WORDS


def _destructive_reasons(node: ast.Node) -> Iterator[str]:
    """Short reasons why a statement can lose data; nothing for statements that cannot."""
    if isinstance(node, ast.DropStmt):
        names = ", ".join(_object_name(o) for o in node.objects or ())
        if node.removeType in {ObjectType.OBJECT_TABLE, ObjectType.OBJECT_SCHEMA}:
            yield f"DROP {_object_words(node.removeType)} {names}"
        elif node.removeType in _DROP_CASCADE_LOSES_COLUMNS and node.behavior == DropBehavior.DROP_CASCADE:
            yield f"DROP {_object_words(node.removeType)} {names} CASCADE (drops the columns that use it)"
    elif isinstance(node, ast.DropdbStmt):
        yield f"DROP DATABASE {node.dbname}"
    elif isinstance(node, ast.DropOwnedStmt):
        yield "DROP OWNED (drops every table the roles own)"
    elif isinstance(node, ast.TruncateStmt):
        yield "TRUNCATE " + ", ".join(_relation_name(r) for r in node.relations or ())
    elif isinstance(node, ast.AlterTableStmt):
        table = _relation_name(node.relation)
        for command in node.cmds or ():
            if not isinstance(command, ast.AlterTableCmd):
                continue
            if command.subtype == AlterTableType.AT_DropColumn:
                yield f"DROP COLUMN {table}.{command.name}"
            elif command.subtype == AlterTableType.AT_AlterColumnType:
                yield f"column type change {table}.{command.name}"
    for dml in _executed_dml(node):
        if dml.whereClause is None:
            verb = "DELETE" if isinstance(dml, ast.DeleteStmt) else "UPDATE"
            yield f"{verb} without WHERE on {_relation_name(dml.relation)}"


def _executed_dml(node: ast.Node) -> Iterator[ast.DeleteStmt | ast.UpdateStmt]:
    """DELETE and UPDATE that run now: the statement itself, its WITH queries and EXPLAIN ANALYZE.

    Rule actions and SQL-standard function bodies are parsed too but only run later, so they are skipped.
    """
    if isinstance(node, ast.DeleteStmt | ast.UpdateStmt):
        yield node
    if isinstance(node, ast.ExplainStmt):
        if _option_enabled(node.options, "analyze") and node.query is not None:
            yield from _executed_dml(node.query)
        return
    if isinstance(node, ast.SelectStmt):
        for part in (node.larg, node.rarg):
            if part is not None:
                yield from _executed_dml(part)
    with_clause = getattr(node, "withClause", None)
    if isinstance(with_clause, ast.WithClause):
        for cte in with_clause.ctes or ():
            if isinstance(cte, ast.CommonTableExpr) and cte.ctequery is not None:
                yield from _executed_dml(cte.ctequery)


def _concurrent_index(node: ast.Node) -> tuple[str | None, str | None]:
    """The index a CREATE INDEX CONCURRENTLY builds and its table, quoted where they need it (so
    `to_regclass` and a pasted DROP INDEX read them back exactly)."""
    if not isinstance(node, ast.IndexStmt) or not node.concurrent or node.relation is None:
        return None, None
    schema, table = node.relation.schemaname, node.relation.relname
    table_name = qualified_name(*(part for part in (schema, table) if part))
    if node.idxname is None:
        return None, table_name
    # An index always lives in its table's schema.
    return qualified_name(*(part for part in (schema, node.idxname) if part)), table_name


def _relation_name(relation: ast.RangeVar | None) -> str:
    if relation is None:
        return "?"
    return ".".join(p for p in (relation.schemaname, relation.relname) if p)


def _object_name(obj: object) -> str:
    if isinstance(obj, ast.String):
        return str(obj.sval)
    if isinstance(obj, tuple):
        return ".".join(_object_name(part) for part in obj)
    if isinstance(obj, ast.TypeName):
        return ".".join(_object_name(part) for part in obj.names or ())
    return "?"
