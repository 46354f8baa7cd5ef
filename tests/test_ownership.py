"""One owner per concern, checked in the source: the store package holds every SQL statement, and errors are told
apart by their class (or errno), never by their text."""

import ast
import io
import re
import sys
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted([*(ROOT / "modemgw").rglob("*.py"), *(ROOT / "webui").rglob("*.py")])
# The store owns the SQL; the simulator is a modem, not a part of the gateway, and keeps no database.
SQL_OWNERS = (ROOT / "modemgw" / "store", ROOT / "modemgw" / "sim")
SQL = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE\s+FROM|CREATE|PRAGMA|BEGIN|WHERE|ORDER\s+BY)\b")

# Text of an error: str(error), repr(error), error.args, error.strerror, f"{error}"
ERROR_NAMES = {"error", "err", "exc", "exception", "e"}
ERROR_ATTRIBUTES = {"args", "strerror"}
TEXT_MATCHERS = {"startswith", "endswith", "find", "rfind", "index", "rindex", "count", "__contains__"}
RE_MATCHERS = {"search", "match", "fullmatch", "findall", "finditer"}
# Matches left to the modules' owners (another change of issue "[3/8] One owner per concern" replaces each); an
# entry is (file, the line's text) and lapses when the line changes.
PENDING: set[tuple[str, str]] = set()


def _relative(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name


def test_the_sources_are_found():
    assert ROOT / "modemgw" / "store" / "__init__.py" in SOURCES and ROOT / "webui" / "__init__.py" in SOURCES


def sql_strings(path: Path) -> list[str]:
    """file:line of each string literal (an f-string's parts too) with SQL in it."""
    found = []
    for token in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
        if token.type in (tokenize.STRING, getattr(tokenize, "FSTRING_MIDDLE", -1)) and SQL.search(token.string):
            found.append(f"{_relative(path)}:{token.start[0]}: {token.string.strip()[:80]}")
    return found


def test_no_sql_outside_the_store():
    found = [hit for path in SOURCES if not any(path.is_relative_to(owner) for owner in SQL_OWNERS)
             for hit in sql_strings(path)]
    assert found == [], "SQL belongs in a method of modemgw.store:\n" + "\n".join(found)


@pytest.mark.parametrize("source", [
    'conn.execute("SELECT * FROM inbox WHERE id = ?", (1,))',
    'query(f"UPDATE messages SET status = ? {where}")',
    'clauses.append("sender = ?"); where = "WHERE " + " AND ".join(clauses)',
    'c.execute("PRAGMA quick_check")',
], ids=["select", "f-string", "fragment", "pragma"])
def test_the_sql_scan_sees_statements_and_fragments(tmp_path, source):
    path = tmp_path / "example.py"
    path.write_text(source + "\n")
    assert sql_strings(path)


def _error_names(tree: ast.AST) -> set[str]:
    return ERROR_NAMES | {node.name for node in ast.walk(tree) if isinstance(node, ast.ExceptHandler) and node.name}


def _is_error_text(node: ast.AST, names: set[str]) -> bool:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("str", "repr", "format"):
        return any(isinstance(arg, ast.Name) and arg.id in names for arg in node.args)
    if isinstance(node, ast.Attribute) and node.attr in ERROR_ATTRIBUTES:
        return isinstance(node.value, ast.Name) and node.value.id in names
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(part, ast.FormattedValue) and isinstance(part.value, ast.Name)
                   and part.value.id in names for part in node.values)
    return False


def _has_error_text(node: ast.AST, names: set[str]) -> bool:
    return any(_is_error_text(child, names) for child in ast.walk(node))


def _matches_text(node: ast.AST, names: set[str]) -> bool:
    """Whether `node` decides something by an error's text: compares it, looks for words in it, or applies a
    regular expression to it (`"x" in str(anything)` counts too)."""
    if isinstance(node, ast.Compare):
        operands = [node.left, *node.comparators]
        if any(_has_error_text(operand, names) for operand in operands):
            return True
        return any(isinstance(op, (ast.In, ast.NotIn)) and isinstance(right, ast.Call)
                   and isinstance(right.func, ast.Name) and right.func.id in ("str", "repr")
                   for op, right in zip(node.ops, node.comparators, strict=True))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        if node.func.attr in TEXT_MATCHERS and _has_error_text(node.func.value, names):
            return True
        if node.func.attr in RE_MATCHERS and any(_has_error_text(arg, names) for arg in node.args):
            return True
    return False


def text_matches(path: Path) -> list[str]:
    """file:line of each place that tells errors apart by their text."""
    source = path.read_text()
    tree = ast.parse(source)
    names = _error_names(tree)
    lines = source.splitlines()
    found = []
    for node in ast.walk(tree):
        if _matches_text(node, names):
            line = lines[node.lineno - 1].strip()
            if (_relative(path), line) not in PENDING:
                found.append(f"{_relative(path)}:{node.lineno}: {line[:100]}")
    return sorted(set(found))


def test_errors_are_never_told_apart_by_their_text():
    found = [hit for path in SOURCES for hit in text_matches(path)]
    assert found == [], ("catch a class (StoreError's Duplicate, Conflict, NotFound; control's NotPermitted) or "
                         "compare an errno instead of matching an error's text:\n" + "\n".join(found))


@pytest.mark.parametrize("source, matches", [
    ('try:\n    f()\nexcept ValueError as problem:\n    if "idempotency" in str(problem):\n        pass\n', True),
    ('if str(error) == "locked":\n    pass\n', True),
    ('busy = "x" if "lock" in str(error).lower() else ""\n', True),
    ('text = str(error) if str(error).startswith(device) else device\n', True),
    ('if re.search("denied", f"{error}"):\n    pass\n', True),
    ('if error.args[0] == "no such table":\n    pass\n', True),
    ('if "x" in str(value):\n    pass\n', True),
    ('if error.errno in (errno.EBUSY,):\n    pass\n', False),
    ('message = str(error) or type(error).__name__\n', False),
    ('raise Failure(f"cannot open: {error}") from None\n', False),
], ids=["in-str", "equals", "lowered", "startswith", "regex", "args", "in-str-of-anything", "errno", "shown",
        "raised"])
def test_the_error_text_scan(tmp_path, source, matches):
    path = tmp_path / "example.py"
    path.write_text(source)
    assert bool(text_matches(path)) is matches


# --- one façade: the edges go through the gateway ---------------------------------------------------------------

POOL = ROOT / "modemgw" / "pool"
# The edges: each talks to the gateway (and its own helpers), never to another edge. A module's own package is
# one edge (webui/ is all of webui).
EDGES = ("modemgw.api", "modemgw.cli", "modemgw.daemon", "webui")
# Imports one edge may make of another, by name: `modemgw serve` and `modemgw demo` start the daemon, and use
# nothing else of it.
EDGE_IMPORTS_ALLOWED = {("modemgw/cli.py", "modemgw.daemon", "Daemon")}
# Reads and imports left to webui's owner (another change of issue "[3/8] One owner per concern" replaces each):
# (file, the line's text); an entry lapses when the line changes.
PENDING_WORKERS: set[tuple[str, str]] = set()
PENDING_IMPORTS: set[tuple[str, str]] = set()


def _module_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _edge_of(module: str) -> str | None:
    return next((edge for edge in EDGES if module == edge or module.startswith(edge + ".")), None)


def workers_reads(path: Path) -> list[str]:
    """file:line of each read of a pool's `workers` (`pool.workers`, `self.pool.workers`, `daemon.pool.workers`)."""
    source = path.read_text()
    lines = source.splitlines()
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr == "workers":
            owner = node.value
            name = owner.id if isinstance(owner, ast.Name) else owner.attr if isinstance(owner, ast.Attribute) else ""
            line = lines[node.lineno - 1].strip()
            if name.lstrip("_") == "pool" and (_relative(path), line) not in PENDING_WORKERS:
                found.append(f"{_relative(path)}:{node.lineno}: {line[:100]}")
    return found


def test_only_the_pool_reads_its_workers():
    found = [hit for path in SOURCES if not path.is_relative_to(POOL) for hit in workers_reads(path)]
    assert found == [], ("read the modems through the gateway (modem_states, find_modem, modems_now) or the pool's "
                         "states(), find(name), state_of(id), never pool.workers:\n" + "\n".join(found))


def _imports(tree: ast.AST, module: str) -> list[tuple[int, str, tuple[str, ...]]]:
    """(line, module imported, names imported from it) for every import, at any depth; relative ones resolved."""
    package = module if module in ("webui",) or module.endswith(".__init__") else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found.append((node.lineno, base, tuple(alias.name for alias in node.names)))
    return found


def edge_imports(path: Path) -> list[str]:
    """file:line of each import by an edge of another edge (`from modemgw import api` too), or of the store's
    internals (a module under modemgw.store: `from modemgw.store import X` takes what the store exports)."""
    module = _module_of(path)
    own = _edge_of(module)
    if own is None:
        return []
    source = path.read_text()
    lines = source.splitlines()
    found = []
    for lineno, imported, names in _imports(ast.parse(source), module):
        targets = [imported, *(f"{imported}.{name}" for name in names)]
        other = {_edge_of(target) for target in targets} - {None, own}
        internal = imported.startswith("modemgw.store.")
        allowed = all((_relative(path), edge, name) in EDGE_IMPORTS_ALLOWED for edge in other for name in names)
        line = lines[lineno - 1].strip()
        if (other and not (names and allowed) or internal) and (_relative(path), line) not in PENDING_IMPORTS:
            found.append(f"{_relative(path)}:{lineno}: {line[:100]}")
    return found


def test_edges_import_neither_each_other_nor_store_internals():
    found = [hit for path in SOURCES for hit in edge_imports(path)]
    assert found == [], ("api, webui, cli and daemon go through modemgw.gateway (and share modemgw.views and "
                         "modemgw.problems); they import neither each other nor modemgw.store's modules:\n"
                         + "\n".join(found))


@pytest.mark.parametrize("name, source, hits", [
    ("modemgw/metrics.py", "live = [w for w in self.daemon.pool.workers]\n", True),
    ("modemgw/metrics.py", "states = pool.states()\n", False),
    ("modemgw/api.py", "from modemgw.daemon import Daemon\n", True),
    ("modemgw/api.py", "def f():\n    from webui import sessions\n", True),
    ("modemgw/daemon.py", "from modemgw.api import message_view\n", True),
    ("modemgw/cli.py", "from modemgw.daemon import Daemon\n", False),
    ("modemgw/cli.py", "from modemgw.daemon import control_request\n", True),
    ("modemgw/cli.py", "import webui\n", True),
    ("modemgw/api.py", "from modemgw.store.messages import Messages\n", True),
    ("modemgw/api.py", "from modemgw.store import NotFound\n", False),
    ("modemgw/daemon.py", "from modemgw.views import message_view\n", False),
    ("webui/__init__.py", "from modemgw.api import problem\n", True),
    ("webui/__init__.py", "from .sessions import Sessions\n", False),
], ids=["workers", "states", "api-daemon", "api-webui-inside", "daemon-api", "cli-daemon-allowed",
        "cli-daemon-internal", "cli-webui", "store-internal", "store-export", "views", "webui-api", "relative"])
def test_the_ownership_scans(tmp_path, monkeypatch, name, source, hits):
    path = tmp_path / name
    path.parent.mkdir(parents=True)
    path.write_text(source)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert bool(workers_reads(path) or edge_imports(path)) is hits
