"""Loading a project: YAML read with limits (size, aliases, depth), ``${VAR}`` expansion of
``gatecheck.yaml`` after parsing (credentials only from it; thresholds never), every file
parsed into its model, every problem collected (one line each, naming
the file, the key and the bad value) and raised as one :class:`~gatecheck.errors.ConfigError`,
so ``gatecheck validate`` shows the whole list at once."""

from __future__ import annotations

import functools
import hashlib
import os
import re
from collections.abc import Callable, Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from gatecheck.config.checks import cross_check
from gatecheck.config.models import (
    GATES_DIR,
    PROJECT_FILE,
    SUITES_DIR,
    THRESHOLDS_FILE,
    ExpectationSpec,
    GateConfig,
    Project,
    ProjectConfig,
    SuiteConfig,
    ThresholdsConfig,
)
from gatecheck.config.problems import parse
from gatecheck.errors import ConfigError

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_MAX_FILE_BYTES = 1_000_000
# libyaml's safe loader when PyYAML has it (its wheels do): ten times faster than the pure
# Python one, the same safe constructors and error classes.
_BASE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


_MERGE = "tag:yaml.org,2002:merge"


class UniqueKeysLoader(_BASE_LOADER):  # type: ignore[misc,valid-type]
    """The safe loader, refusing a key written twice in one mapping. PyYAML keeps the last
    value silently: a second ``dlq_messages_max: 5`` below ``dlq_messages_max: 0`` loosened
    the gate, and ``validate`` said ok. (A merge key's ``<<: *base`` may still be overridden:
    that is what it is for.)"""

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE:
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node.start_mark)
                except TypeError:
                    continue  # an unhashable key: the safe constructor refuses it itself
                if first is not key_node.start_mark:
                    raise yaml.constructor.ConstructorError(
                        None, None,
                        f"the key {key!r} is written twice in one mapping (first on line {first.line + 1}); "
                        "YAML would keep only the last value",
                        key_node.start_mark,
                    )  # fmt: skip
        return super().construct_mapping(node, deep=deep)


def load_all_unique(text: str) -> list[Any]:
    """Every document of a YAML text (another tool's file to import), read safely, a key
    written twice in one mapping refused (:class:`UniqueKeysLoader`)."""
    return list(yaml.load_all(text, Loader=UniqueKeysLoader))  # a safe loader


class _Loader(UniqueKeysLoader):
    """The safe loader with YAML 1.2's booleans: only true and false. YAML 1.1 also reads
    yes/no/on/off as booleans, so the key ``on:`` of a notify target became ``True``."""


_BOOL = "tag:yaml.org,2002:bool"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != _BOOL]
    for first, resolvers in _BASE_LOADER.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_LOADER: Any = _Loader
_MAX_ALIASES = 50
_MAX_DEPTH = 40
#: Nodes all aliases of a file may stand for together (the shipped files use none).
_MAX_ALIAS_NODES = 10_000


def expand_env(value: Any, environ: Mapping[str, str], where: str, referenced: Collection[str] = ()) -> Any:
    """Expand ``${VAR}`` and ``${VAR:-default}`` in every string of a parsed YAML tree.

    Expansion happens after parsing, so a value from the environment can never change the
    structure of the file. A variable that is not set while one set in the environment is a
    letter away from its name (and not itself in ``referenced``, the file's own references)
    is a misspelling, refused: its default — the embedded warehouse, a staging server —
    would be judged in place of what the environment meant to name.
    """
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in environ and environ[name] != "":
                return environ[name]
            misspelt = misspelling_of(name, environ, referenced)
            if misspelt is not None:
                raise ConfigError(
                    f"{where}: environment variable {name} is not set, but {misspelt} is (misspelt?): "
                    f"set {name}{'' if default is None else ', or its default is judged instead'}"
                )
            if default is not None:
                return default
            raise ConfigError(f"{where}: environment variable {name} is not set and has no default")

        return _ENV_REF.sub(substitute, value)
    # `where` is "file" at the top, then "file: key.path": the file is always followed by ": ".
    inside = ": " in where
    if isinstance(value, dict):
        return {
            k: expand_env(v, environ, f"{where}.{k}" if inside else f"{where}: {k}", referenced)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [
            expand_env(v, environ, f"{where}[{i}]" if inside else f"{where}: [{i}]", referenced)
            for i, v in enumerate(value)
        ]
    return value


def referenced_names(tree: Any) -> frozenset[str]:
    """Every variable a parsed YAML tree takes from the environment (``${VAR…}``)."""
    return frozenset(m.group(1) for _, _, value in _texts(tree) for m in _ENV_REF.finditer(value))


def misspelling_of(name: str, environ: Mapping[str, str], referenced: Collection[str] = ()) -> str | None:
    """A variable set in ``environ`` (not empty, not in ``referenced``) one edit from
    ``name`` — a letter added, left out, changed or two swapped, or the case alone differing
    — or None. Names differing in one digit (``DB_HOST1``, ``DB_HOST2``) are different names."""
    wanted = name.upper()
    if len(wanted) < 6:  # AB and BA: too short to tell a misspelling from another name
        return None
    for other, text in sorted(environ.items()):
        if other == name or other in referenced or text == "" or abs(len(other) - len(wanted)) > 1:
            continue
        if _one_edit(wanted, other.upper()):
            return other
    return None


def _one_edit(a: str, b: str) -> bool:
    """Whether ``b`` is ``a`` or one insertion, deletion, substitution (not of a digit by a
    digit) or adjacent transposition away from it."""
    if a == b:
        return True
    if len(a) == len(b):
        differ = [i for i in range(len(a)) if a[i] != b[i]]
        if len(differ) == 1:
            i = differ[0]
            return not (a[i].isdigit() and b[i].isdigit())
        return (
            len(differ) == 2
            and differ[1] == differ[0] + 1
            and a[differ[0]] == b[differ[1]]
            and a[differ[1]] == b[differ[0]]
        )
    short, long = (a, b) if len(a) < len(b) else (b, a)
    i = next((k for k in range(len(short)) if short[k] != long[k]), len(short))
    return short[i:] == long[i + 1 :]


#: Keys whose value is a credential itself.
_SECRET_KEYS = frozenset({"password", "token", "bearer_token"})
#: What in a URL is a credential: ``user:password@``, a query parameter named like a secret.
_URL_PASSWORD = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://[^/?#\s]*?:[^/?#\s]+@")
_URL_SECRET_PARAMETER = re.compile(
    r"[?&;][A-Za-z_]*(?:password|passwd|pwd|token|secret|api_?key|access_?key)[A-Za-z_]*=[^&#\s]+", re.I
)
#: nats://TOKEN@host: a NATS URL's user part alone is a token.
_NATS_TOKEN = re.compile(r"^(?:nats|tls)://[^/?#@:\s]+@", re.I)


def _texts(tree: Any, where: str = "", key: str = "") -> Iterator[tuple[str, str, str]]:
    """Each string of a parsed YAML tree: (where, under which key — an item of a list under
    its list's —, the string)."""
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from _texts(v, f"{where}.{k}" if where else str(k), str(k))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            yield from _texts(v, f"{where}[{i}]", key)
    elif isinstance(tree, str):
        yield where, key, tree


def written_secrets(tree: Any, label: str) -> list[str]:
    """Each credential written in ``tree`` (``gatecheck.yaml`` as parsed) as text rather than
    taken from the environment: a ``password``/``token``/``bearer_token``, a URL's password,
    a secret-named query parameter or a NATS URL's token. The file is reviewed and committed:
    a secret in it is one in the repository's history. ``${VAR}`` is the environment's; a
    ``${VAR:-default}`` default is written in the file and counts."""
    forms = (_URL_PASSWORD, _NATS_TOKEN, _URL_SECRET_PARAMETER)
    found: list[str] = []
    for where, key, value in _texts(tree):
        text = _ENV_REF.sub(lambda m: m.group(2) or "", value).strip()  # as written in the file
        urls = text.split(",") if key == "url" else []  # (a NATS cluster: URLs, comma-separated)
        if (key in _SECRET_KEYS and text) or any(form.search(u.strip()) for u in urls for form in forms):
            found.append(
                f"{label}: {where}: a credential written in the file (reviewed and committed, so in "
                'the repository\'s history): give it from the environment, "${VAR}", or a file '
                "(password_file, url_file)"
            )
    return found


def environment_references(tree: Any, label: str, why: str) -> list[str]:
    """Each ``${VAR}`` in ``tree``, a file that is not expanded (only gatecheck.yaml reads the
    environment): one line per key, saying ``why``. Expanded, a threshold was text (``'0'``
    refused as "not a finite number"); left as it is, a suite's SQL was a syntax error
    pointing at its middle."""
    return [
        f"{label}: {where}: {match.group(0)} {why}"
        for where, _, value in _texts(tree)
        for match in _ENV_REF.finditer(value)
    ]


#: Why each file other than gatecheck.yaml takes nothing from the environment.
_NOT_EXPANDED = {
    "thresholds": "takes a threshold from the environment, where no review sees it: write the value here "
    "(per environment under environments:, per phase under phases:)",
    "suites": "is not expanded: a suite is the same in every environment (only gatecheck.yaml reads the "
    "environment: its sources, per environment; a number the suite needs: a threshold)",
    "gates": "is not expanded: a gate is the same wherever it runs (only gatecheck.yaml reads the "
    "environment)",
}


def _read_yaml(path: Path, label: str) -> Any:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ConfigError(f"{label}: cannot read file ({exc.strerror})") from exc
    if size > _MAX_FILE_BYTES:
        raise ConfigError(f"{label}: file is {size} bytes; the limit is {_MAX_FILE_BYTES}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{label}: cannot read file ({exc})") from exc
    try:
        data = _parsed(text) if len(text) <= _KEPT_CHARS else _parse(text)
    except _Refused as exc:
        raise ConfigError(f"{label}{exc}") from exc.__cause__
    if not isinstance(data, dict):
        kind = "empty" if data is None else type(data).__name__
        raise ConfigError(f"{label}: expected a mapping at the top level, got {kind}")
    return _copy(data)


class _Refused(Exception):
    """Why a YAML text is refused, as it follows its file's name (``: invalid YAML: …``)."""


#: Texts up to this size keep their parsed tree (:func:`_parsed`).
_KEPT_CHARS = 100_000


@functools.lru_cache(maxsize=256)
def _parsed(text: str) -> Any:
    """:func:`_parse`, kept: a process that loads a project more than once (the demo twice, a
    test suite tens of thousands of times) reads unchanged files again, and parsing one takes
    0.2 ms of CPU where a copy of its tree takes 0.006 (``bench/startup.py``). A pure function
    of the text; callers get a copy (:func:`_copy`); a text that is refused is not kept."""
    return _parse(text)


def _copy(value: Any) -> Any:
    """A copy of a parsed YAML tree that shares no dict or list with it (its scalars are
    immutable)."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _parse(text: str) -> Any:
    """A YAML text's tree, or :class:`_Refused` (its message follows the file's name)."""
    try:
        # Aliases can multiply a small file into an exponential tree ("billion laughs"):
        # configuration needs few, so more than _MAX_ALIASES aliases, or aliases that expand
        # to more than _MAX_ALIAS_NODES nodes (42 aliases can already stand for 2**21), are
        # refused before loading. Deep nesting would exhaust the recursive composer: refused
        # before loading too.
        aliases = expanded = 0
        sizes: dict[str, int] = {}  # anchor → nodes it stands for, its own aliases expanded
        open_nodes: list[tuple[str | None, int]] = []  # the collections being read: (anchor, nodes)

        def add(nodes: int) -> None:
            if open_nodes:
                anchor, count = open_nodes[-1]
                open_nodes[-1] = (anchor, count + nodes)

        for event in yaml.parse(text, Loader=_LOADER):
            if isinstance(event, yaml.AliasEvent):
                aliases += 1
                nodes = sizes.get(event.anchor or "", 1)
                expanded += nodes
                if expanded > _MAX_ALIAS_NODES:
                    raise _Refused(f": YAML aliases (*name) expand to more than {_MAX_ALIAS_NODES:,} nodes")
                add(nodes)
            elif isinstance(event, yaml.ScalarEvent):
                if event.anchor:
                    sizes[event.anchor] = 1
                add(1)
            elif isinstance(event, yaml.CollectionStartEvent):
                open_nodes.append((event.anchor, 1))
                if len(open_nodes) > _MAX_DEPTH:
                    mark = event.start_mark
                    where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""
                    raise _Refused(f":{where} nested more than {_MAX_DEPTH} levels deep")
            elif isinstance(event, yaml.CollectionEndEvent):
                anchor, nodes = open_nodes.pop()
                if anchor:
                    sizes[anchor] = nodes
                add(nodes)
        if aliases > _MAX_ALIASES:
            raise _Refused(f": {aliases} YAML aliases (*name); at most {_MAX_ALIASES} are allowed")
        return yaml.load(text, Loader=_LOADER)  # a safe loader (libyaml or PyYAML)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise _Refused(f":{where}: invalid YAML: {exc.problem}") from exc
    except yaml.YAMLError as exc:
        raise _Refused(f": invalid YAML: {exc}") from exc
    except ValueError as exc:  # Python refuses to read an integer of more than 4300 digits
        reason = "a number with thousands of digits" if "digits" in str(exc) else str(exc)
        raise _Refused(f": invalid YAML value: {reason}") from exc


def load_project(
    root: Path | str,
    environ: Mapping[str, str] | None = None,
    expectations: Callable[[ExpectationSpec], list[str]] | None = None,
    notify: bool = False,
) -> Project:
    """Load and cross-check a project directory; raise one ConfigError listing every problem.

    Every file is read and checked even when another one is broken, so one run lists every
    problem. ``expectations``: the check of one expectation's type and kwargs to run on every
    expectation — Great Expectations' own (:func:`gatecheck.evaluation.validation.expectation_problems`,
    which imports GE and takes seconds: ``validate``, ``run`` and ``serve`` hand it in);
    configuration never imports the validation it configures.

    ``notify``: the caller sends notifications (``serve``), so a ``notify:`` target whose
    ``${VAR}`` is unset is a problem. Every other command leaves such a target out and says
    why in :attr:`Project.notify_unresolved` (``validate`` prints it): only ``serve`` needs it."""
    root = Path(root)
    if root.name == PROJECT_FILE and root.is_file():  # `--config gatecheck.yaml`: its directory
        root = root.parent
    elif root.is_file():
        raise ConfigError(f"{root}: --config names the directory holding {PROJECT_FILE}, not a file")
    environ = os.environ if environ is None else environ
    problems: list[str] = []
    if not (root / PROJECT_FILE).is_file():
        raise ConfigError(f"{root / PROJECT_FILE}: not found (--config names the directory holding it)")

    unresolved: list[str] = []

    def load(path: Path, label: str, model: type[BaseModel], expand: bool) -> Any:
        try:
            data = _read_yaml(path, label)
            if model is ProjectConfig:
                problems.extend(written_secrets(data, label))
            if not expand:  # (thresholds.yaml, suites, gates: only gatecheck.yaml is expanded)
                kind = "thresholds" if model is ThresholdsConfig else label.split("/", 1)[0]
                unexpanded = environment_references(data, label, _NOT_EXPANDED.get(kind, "is not expanded"))
                problems.extend(unexpanded)
                if unexpanded and model is not ThresholdsConfig:
                    return None  # (its SQL, read with a ${…} in it, would only add a syntax error)
            names = referenced_names(data) if expand else frozenset()
            targets = data.pop("notify", None) if expand and not notify and model is ProjectConfig else None
            if expand:
                data = expand_env(data, environ, label, names)
            if isinstance(targets, list):
                kept = []
                for index, target in enumerate(targets):
                    try:
                        kept.append(expand_env(target, environ, f"{label}: notify[{index}]", names))
                    except ConfigError as exc:  # only serve sends: said, not fatal here
                        unresolved.append(exc.problems[0])
                data["notify"] = kept
            elif targets is not None:
                data["notify"] = expand_env(targets, environ, f"{label}: notify", names)
            return parse(label, model, data, problems)
        except ConfigError as exc:
            problems.extend(exc.problems)
        except RecursionError:  # an alias inside its own anchor: a: &a [*a]
            problems.append(f"{label}: a YAML alias refers to itself (recursive anchor)")
        return None

    config = load(root / PROJECT_FILE, PROJECT_FILE, ProjectConfig, expand=True)
    thresholds_path = root / THRESHOLDS_FILE
    if thresholds_path.is_file():
        thresholds = load(thresholds_path, THRESHOLDS_FILE, ThresholdsConfig, expand=False)
    else:
        thresholds = ThresholdsConfig()

    files: dict[str, str] = {}
    unparsed: set[str] = set()

    def load_each(directory: str, model: type[BaseModel], kind: str, key: str) -> dict[str, Any]:
        """Load every YAML file of a directory; the ``key`` field must equal the file name."""
        found: dict[str, Any] = {}
        for path in sorted((root / directory).glob("*.y*ml")):
            label = f"{directory}/{path.name}"
            item = load(path, label, model, expand=False)
            if item is None:
                unparsed.add(f"{kind}:{path.stem}")
                continue
            name = getattr(item, key)
            if name != path.stem:
                problems.append(f"{label}: {key}: {name!r} must match the file name {path.stem!r}")
                unparsed.add(f"{kind}:{path.stem}")
            elif name in found:
                problems.append(f"{label}: {kind} {name!r} is defined twice")
            else:
                found[name] = item
                files[f"{kind}:{name}"] = label
        return found

    gates: dict[str, GateConfig] = load_each(GATES_DIR, GateConfig, "gate", "phase")
    suites: dict[str, SuiteConfig] = load_each(SUITES_DIR, SuiteConfig, "suite", "name")

    if expectations is not None:
        problems.extend(expectation_problems(suites, files, expectations))

    # A broken gatecheck.yaml or thresholds.yaml still lets the other files be cross-checked:
    # what depends on the broken file is skipped (it would only repeat its problem).
    if config is None:
        unparsed.add("project")
    if thresholds is None:
        unparsed.add("thresholds")
    project = Project(
        root=root,
        config=config if config is not None else ProjectConfig.model_construct(environments={}),
        thresholds=thresholds if thresholds is not None else ThresholdsConfig(),
        gates=gates,
        suites=suites,
        config_hash=config_hash(root),
        files=files,
        unparsed=frozenset(unparsed),
        notify_unresolved=tuple(unresolved),
    )
    problems.extend(cross_check(project))
    if problems:
        raise ConfigError(problems[0], problems)
    return project


def expectation_problems(
    suites: Mapping[str, SuiteConfig],
    files: Mapping[str, str],
    problems_of: Callable[[ExpectationSpec], list[str]],
) -> list[str]:
    """``problems_of`` (one expectation's check) on every expectation of every suite, each
    line saying where. ``gatecheck serve`` runs it in its evaluation worker, which loads GE
    anyway."""
    found: list[str] = []
    for suite in suites.values():
        label = files.get(f"suite:{suite.name}", f"{SUITES_DIR}/{suite.name}.yaml")
        for index, spec in enumerate(suite.expectations):
            found.extend(f"{label}: expectations[{index}]: {p}" for p in problems_of(spec))
    return found


def config_hash(root: Path) -> str:
    """SHA-256 over every configuration file (as written, before variable expansion)."""
    digest = hashlib.sha256()
    paths = [root / PROJECT_FILE, root / THRESHOLDS_FILE]
    paths += sorted((root / GATES_DIR).glob("*.y*ml")) + sorted((root / SUITES_DIR).glob("*.y*ml"))
    for path in paths:
        if path.is_file():
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()
