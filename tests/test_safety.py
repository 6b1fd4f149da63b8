"""Safe by construction (issue 8, item 6).

* Programs (tshark, tcpdump, editcap, ...) are run from argument lists, never
  through a shell: an ast scan of every Python file of the package, the tests,
  the benchmarks and the sample builder; and a capture whose name is a shell
  command is analyzed, through tshark and without it, running nothing.
* Nothing derived from input is unpickled or evaluated: an ast scan of the
  package for pickle, marshal, shelve, yaml, eval, exec and their kin.
* The HTML report escapes every string from the capture: that test is
  tests/test_report_html.py (``test_every_string_from_the_capture_is_escaped``,
  with a capture carrying ``<script>`` in the shown fields, and the page rendered
  in headless Chromium with no injected script running); not repeated here.
* Outputs only where asked: every command, run on a copy of a sample from a
  directory of its own, writes the file named by ``-o`` and nothing else: not
  beside the capture, not in the working directory, not in the temporary
  directory; in the home directory nothing but matplotlib's font cache.
"""
from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
PACKAGE = ROOT / "pcapstate"


def python_files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts)


SCANNED = python_files("pcapstate", "tests", "benchmarks", "samples")


# --- running programs ---------------------------------------------------------------------

RUNNERS = {f"subprocess.{name}" for name in ("run", "Popen", "call", "check_call", "check_output")}
SHELLS = {"os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput",
          "asyncio.create_subprocess_shell", "pty.spawn", "commands.getoutput", "commands.getstatusoutput"}


class Module:
    """One parsed file: import aliases, parents, and the functions it defines."""

    def __init__(self, source: str, name: str = "<string>") -> None:
        self.name = name
        self.tree = ast.parse(source, name)
        self.parent: dict[ast.AST, ast.AST] = {}
        self.aliases: dict[str, str] = {}
        for node in ast.walk(self.tree):
            for child in ast.iter_child_nodes(node):
                self.parent[child] = node
            if isinstance(node, ast.Import):
                for alias in node.names:
                    self.aliases[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else \
                        alias.name.split(".")[0]
            elif isinstance(node, ast.ImportFrom) and node.module:
                for alias in node.names:
                    self.aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"

    def qualified(self, node: ast.AST) -> str | None:
        """``subprocess.run`` for ``sp.run`` after ``import subprocess as sp``, etc."""
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name):
            return None
        parts.append(self.aliases.get(node.id, node.id))
        return ".".join(reversed(parts))

    def enclosing(self, node: ast.AST, kinds) -> ast.AST | None:
        while node in self.parent:
            node = self.parent[node]
            if isinstance(node, kinds):
                return node
        return None

    def where(self, node: ast.AST) -> str:
        return f"{self.name}:{node.lineno}"


FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)


class ArgvCheck:
    """Decides whether an expression is an argument list (list or tuple), following names.

    A literal list or tuple, a list comprehension, ``a + b`` with either side an
    argument list, ``list(...)``/``tuple(...)``, a name all of whose assignments
    in its function (or the module) are argument lists, a parameter annotated
    list/tuple/Sequence or a ``*args``, ``self.x`` assigned only argument lists in
    its class, and a call of a function (of any scanned file) that returns only
    argument lists.
    """

    def __init__(self, modules: list[Module]) -> None:
        self.modules = modules
        self.functions: dict[str, list[tuple[Module, ast.AST]]] = {}
        for module in modules:
            for node in ast.walk(module.tree):
                if isinstance(node, FUNCTIONS):
                    self.functions.setdefault(node.name, []).append((module, node))
        self._returns: dict[str, bool] = {}

    def __call__(self, module: Module, expr: ast.AST, depth: int = 0) -> bool:
        if depth > 8:
            return False
        if isinstance(expr, (ast.List, ast.Tuple, ast.ListComp)):
            return True
        if isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.Add):
            return self(module, expr.left, depth + 1) or self(module, expr.right, depth + 1)
        if isinstance(expr, ast.Call):
            name = expr.func.id if isinstance(expr.func, ast.Name) else \
                expr.func.attr if isinstance(expr.func, ast.Attribute) else None
            if name in ("list", "tuple", "sorted"):
                return True
            return name is not None and self.returns_argv(name, depth)
        if isinstance(expr, ast.Name):
            return self.name_is_argv(module, expr, depth)
        if isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name) and expr.value.id == "self":
            return self.attribute_is_argv(module, expr, depth)
        return False

    def returns_argv(self, name: str, depth: int) -> bool:
        if name not in self._returns:
            self._returns[name] = False  # recursion guard
            found = self.functions.get(name, [])
            results = [self(module, node.value, depth + 1) for module, function in found
                       for node in ast.walk(function) if isinstance(node, ast.Return) and node.value is not None]
            self._returns[name] = bool(results) and all(results)
        return self._returns[name]

    def name_is_argv(self, module: Module, name: ast.Name, depth: int) -> bool:
        function = module.enclosing(name, FUNCTIONS)
        if function is not None:
            arguments = function.args
            if arguments.vararg is not None and arguments.vararg.arg == name.id:
                return True
            for argument in arguments.posonlyargs + arguments.args + arguments.kwonlyargs:
                if argument.arg == name.id:
                    annotation = ast.unparse(argument.annotation) if argument.annotation else ""
                    return annotation.startswith(("list", "tuple", "Sequence", "typing.Sequence"))
        values = self.bound_values(module, function or module.tree, lambda t: isinstance(t, ast.Name)
                                   and t.id == name.id)
        return bool(values) and all(self(module, v, depth + 1) for v in values)

    def attribute_is_argv(self, module: Module, attribute: ast.Attribute, depth: int) -> bool:
        cls = module.enclosing(attribute, ast.ClassDef)
        if cls is None:
            return False
        results = []
        for method in (n for n in cls.body if isinstance(n, FUNCTIONS)):
            for value in self.bound_values(module, method, lambda t: isinstance(t, ast.Attribute)
                                           and isinstance(t.value, ast.Name) and t.value.id == "self"
                                           and t.attr == attribute.attr):
                results.append(self(module, value, depth + 1))
        return bool(results) and all(results)

    @staticmethod
    def bound_values(module: Module, scope: ast.AST, matches) -> list[ast.AST]:
        """Every expression assigned (``=``, ``: T =``, ``+=``) to a target ``matches`` accepts in ``scope``."""
        values = []
        for node in ast.walk(scope):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if matches(target):
                        values.append(node.value)
                    elif isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                        values += [v for t, v in zip(target.elts, node.value.elts) if matches(t)]
                    elif isinstance(target, ast.Tuple) and any(matches(t) for t in target.elts):
                        values.append(ast.Constant("unknown"))  # unpacked from something opaque
            elif isinstance(node, ast.AnnAssign) and node.value is not None and matches(node.target):
                values.append(node.value)
            elif isinstance(node, ast.AugAssign) and matches(node.target):
                values.append(node.value)
        return values


def program_calls(modules: list[Module]) -> tuple[list[str], list[str]]:
    """(every call that runs a program, the problems found), as ``file:line`` strings."""
    check = ArgvCheck(modules)
    calls, problems = [], []
    for module in modules:
        for node in ast.walk(module.tree):
            if not isinstance(node, ast.Call):
                continue
            name = module.qualified(node.func)
            if name in SHELLS:
                problems.append(f"{module.where(node)}: {name} runs a shell")
                continue
            if name not in RUNNERS:
                continue
            calls.append(module.where(node))
            for keyword in node.keywords:
                if keyword.arg is None:
                    problems.append(f"{module.where(node)}: **{ast.unparse(keyword.value)} may carry shell=True")
                elif keyword.arg == "shell" and not (isinstance(keyword.value, ast.Constant)
                                                     and keyword.value.value is False):
                    problems.append(f"{module.where(node)}: shell={ast.unparse(keyword.value)}")
            argv = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "args"), None)
            if argv is None or isinstance(argv, ast.Starred) or not check(module, argv):
                shown = ast.unparse(argv) if argv is not None else "nothing"
                problems.append(f"{module.where(node)}: {name}({shown}, ...) is not visibly an argument list")
    return calls, problems


def parsed(paths: list[Path]) -> list[Module]:
    return [Module(p.read_text(encoding="utf-8"), str(p.relative_to(ROOT))) for p in paths]


def test_programs_run_from_argument_lists_never_a_shell():
    calls, problems = program_calls(parsed(SCANNED))
    assert problems == []
    assert "pcapstate/decode/tshark.py" in {c.split(":")[0] for c in calls}  # the scan sees the tshark decoder
    assert len(calls) >= 20  # ... and the tests' tcpdump, tshark, editcap and pcapstate runs


@pytest.mark.parametrize("source, problem", [
    ("import subprocess\nsubprocess.run('tshark -r ' + path, shell=True)", "shell=True"),
    ("import subprocess as sp\nsp.Popen(['tshark'], shell=flag)", "shell=flag"),
    ("import os\nos.system('tcpdump -r x')", "os.system runs a shell"),
    ("from os import popen\npopen('tcpdump')", "os.popen runs a shell"),
    ("from subprocess import getoutput\ngetoutput('tcpdump')", "subprocess.getoutput runs a shell"),
    ("import subprocess\ndef f(path):\n    cmd = 'tshark -r ' + path\n    subprocess.run(cmd)", "not visibly"),
    ("import subprocess\ndef f(**kw):\n    subprocess.run(['tshark'], **kw)", "may carry shell=True"),
    ("from subprocess import check_output\ncheck_output(f'tcpdump -r {p}')", "not visibly"),
])
def test_the_scan_catches_shell_invocations(source, problem):
    _, problems = program_calls([Module(source)])
    assert any(problem in found for found in problems), problems


def test_the_scan_follows_argument_lists_through_names():
    source = (
        "import subprocess\n"
        "def command(path):\n    return ['tshark', '-r', path]\n"
        "def f(path, extra: list[str], *more):\n"
        "    cmd = ['tcpdump', '-r', path]\n    cmd += ['-n']\n"
        "    subprocess.run(cmd)\n    subprocess.run(command(path) + extra)\n    subprocess.run(more)\n"
        "    subprocess.run(args=('a',), shell=False)\n"
        "class Run:\n    def __init__(self, argv: list[str]):\n        self.argv, self.x = argv, 1\n"
        "    def go(self):\n        subprocess.Popen(self.argv)\n")
    calls, problems = program_calls([Module(source)])
    assert len(calls) == 5 and problems == []


def test_pyshark_runs_nothing():
    """pcapstate finds tshark itself (not through pyshark's config.ini lookup, see below) and runs it
    from a list (above): none of pyshark's capture classes, which would run tshark their own way."""
    imported = set()
    for module in parsed(python_files("pcapstate")):
        for node in ast.walk(module.tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pyshark"):
                imported |= {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("pyshark") for a in node.names), module.where(node)
    assert imported == set()


HOSTILE_NAMES = [
    "a;touch pwned;.pcap",
    "$(touch pwned).pcap",
    "`touch pwned`.pcap",
    "x' ; touch pwned ; '.pcap",
    'x" && touch pwned && ".pcap',
    "a|touch pwned|.pcap",
    "a\ntouch pwned\n.pcap",
    "-r pwned.pcap",
]


def _pwned(*folders: Path) -> list[Path]:
    return [p for folder in folders for p in folder.rglob("*pwned*") if p.suffix != ".pcap"]


@pytest.mark.parametrize("decoder", ["dpkt", "pyshark"])
def test_capture_named_like_a_shell_command_runs_nothing(tmp_path, decoder):
    if decoder == "pyshark" and shutil.which("tshark") is None:
        pytest.skip("tshark is not installed")
    captures, work = tmp_path / "captures", tmp_path / "work"
    captures.mkdir(), work.mkdir()
    for name in HOSTILE_NAMES:
        path = captures / name
        shutil.copy(SAMPLES / "refused.pcap", path)
        result = subprocess.run([sys.executable, "-m", "pcapstate", "analyze", "--decoder", decoder, "--", str(path)],
                                capture_output=True, text=True, cwd=work)
        assert result.returncode == 0, (name, result.stderr)
        assert result.stdout.startswith(f"{path}: 2 TCP packets, 1 connection"), name
        assert _pwned(captures, work) == [], name
    assert sorted(p.name for p in captures.iterdir()) == sorted(HOSTILE_NAMES)


def test_tshark_gets_the_path_as_one_argument(tmp_path, monkeypatch):
    """In the process: every tshark run of the pyshark decoder is an argument list without
    a shell, with the hostile path as one whole argument."""
    from pcapstate.decode import read_capture
    from pcapstate.decode import tshark as tshark_decoder

    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed")
    seen = []
    real = subprocess.Popen

    def recording(args, *rest, **options):
        seen.append((args, options.get("shell", False)))
        return real(args, *rest, **options)

    monkeypatch.setattr(tshark_decoder.subprocess, "Popen", recording)
    monkeypatch.chdir(tmp_path)
    for name in HOSTILE_NAMES:
        path = tmp_path / name
        shutil.copy(SAMPLES / "refused.pcap", path)
        assert len(read_capture(path, decoder="pyshark")) == 2
    assert len(seen) == len(HOSTILE_NAMES)
    for (args, shell), name in zip(seen, HOSTILE_NAMES):
        assert isinstance(args, list) and shell is False
        assert str(tmp_path / name) in args
    assert _pwned(tmp_path) == []


def test_a_capture_named_dash_is_the_file_not_standard_input(tmp_path):
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed")
    shutil.copy(SAMPLES / "refused.pcap", tmp_path / "-")
    result = subprocess.run([sys.executable, "-m", "pcapstate", "analyze", "--decoder", "pyshark", "--", "-"],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("-: 2 TCP packets, 1 connection")


def _pyshark_config_env(tmp_path: Path, config: str) -> tuple[Path, Path]:
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(SAMPLES / "refused.pcap", work / "refused.pcap")
    (work / "config.ini").write_text(config)
    return work, work / "refused.pcap"


def test_a_config_ini_in_the_working_directory_runs_nothing(tmp_path):
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed")
    work, capture = _pyshark_config_env(tmp_path, "")
    fake = work / "tshark"
    fake.write_text(f"#!/bin/sh\ntouch '{work}/pwned'\nexec '{shutil.which('tshark')}' \"$@\"\n")
    fake.chmod(0o755)
    (work / "config.ini").write_text(f"[tshark]\ntshark_path = {fake}\n")
    result = subprocess.run([sys.executable, "-m", "pcapstate", "analyze", "--decoder", "pyshark", capture.name],
                            capture_output=True, text=True, cwd=work)
    assert result.returncode == 0, result.stderr
    assert _pwned(work) == []


def test_an_unrelated_config_ini_in_the_working_directory_is_no_crash(tmp_path):
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed")
    work, capture = _pyshark_config_env(tmp_path, "[database]\nhost = db.example\n")
    result = subprocess.run([sys.executable, "-m", "pcapstate", "analyze", "--decoder", "pyshark", capture.name],
                            capture_output=True, text=True, cwd=work)
    assert "Traceback" not in result.stderr
    assert result.returncode == 0, result.stderr


# --- nothing from the input is unpickled or evaluated -----------------------------------------

UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "marshal", "shelve", "dill", "cloudpickle", "joblib", "yaml",
                  "ruamel", "jsonpickle"}
UNSAFE_CALLS = {"eval", "exec", "compile", "__import__", "builtins.eval", "builtins.exec", "builtins.compile",
                "pandas.read_pickle", "pd.read_pickle", "pandas.eval", "pd.eval", "numpy.load", "np.load",
                "yaml.load", "yaml.unsafe_load"}
UNSAFE_METHODS = {"read_pickle", "to_pickle", "query", "eval", "loads_pickle"}  # DataFrame.query/eval evaluate strings


def test_nothing_is_unpickled_or_evaluated():
    """No pickle, marshal, shelve or yaml in the package; no eval, exec, compile or __import__;
    no DataFrame.query/eval (expression strings) and no numpy load of pickles."""
    problems = []
    dynamic_imports = []
    for module in parsed(python_files("pcapstate")):
        for node in ast.walk(module.tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                names = []
            for name in names:
                if name.split(".")[0] in UNSAFE_MODULES or name.split(".")[-1] in UNSAFE_MODULES:
                    problems.append(f"{module.where(node)}: imports {name}")
            if not isinstance(node, ast.Call):
                continue
            name = module.qualified(node.func) or ""
            if name in UNSAFE_CALLS or (isinstance(node.func, ast.Attribute) and node.func.attr in UNSAFE_METHODS):
                problems.append(f"{module.where(node)}: calls {ast.unparse(node.func)}")
            if any(k.arg == "allow_pickle" for k in node.keywords):
                problems.append(f"{module.where(node)}: allow_pickle")
            if name in ("importlib.import_module", "import_module"):
                dynamic_imports.append(module.where(node))
    assert problems == []
    # the dynamic imports: a picture kind, checked against a fixed list first, and the
    # build step's fixed list of modules to compile (aot_build.CORE_MODULES)
    assert sorted(w.split(":")[0] for w in dynamic_imports) == ["pcapstate/aot_build.py",
                                                                 "pcapstate/report/plots/__init__.py"]


def test_a_picture_kind_is_no_module_path():
    from pcapstate.report.plots import figure

    for kind in ("os", "..ladder", "ladder.os", "pcapstate.cli", "__init__"):
        with pytest.raises(ValueError):
            figure(kind, None)


# --- outputs only where asked ------------------------------------------------------------------

TABLES = ("flows", "transitions", "retransmissions", "retries", "anomalies")
CASES = {  # id: (arguments, with {capture}, {captures} and {out}; the files expected in out/)
    "analyze": (["analyze", "{capture}"], []),
    "analyze --timeline": (["analyze", "{capture}", "--timeline"], []),
    "analyze -o": (["analyze", "{capture}", "-o", "{out}/summary.txt"], ["summary.txt"]),
    "analyze json": (["analyze", "{capture}", "--format", "json", "-o", "{out}/a.json"], ["a.json"]),
    "analyze jsonl": (["analyze", "{capture}", "--format", "jsonl"], []),
    "analyze csv dir": (["analyze", "{capture}", "--format", "csv", "-o", "{out}/tables/"],
                        [f"tables/{t}.csv" for t in TABLES]),
    "analyze parquet dir": (["analyze", "{capture}", "--format", "parquet", "-o", "{out}/pq"],
                            [f"pq/{t}.parquet" for t in TABLES]),
    "analyze csv no -o (error)": (["analyze", "{capture}", "--format", "csv"], []),
    "retries": (["retries", "{capture}"], []),
    "retries jsonl": (["retries", "{capture}", "--format", "jsonl", "-o", "{out}/r.jsonl"], ["r.jsonl"]),
    "packets": (["packets", "{capture}"], []),
    "packets csv": (["packets", "{capture}", "--format", "csv", "-o", "{out}/p.csv"], ["p.csv"]),
    "packets parquet": (["packets", "{capture}", "--format", "parquet", "-o", "{out}/p.parquet"], ["p.parquet"]),
    "plot ladder": (["plot", "ladder", "{capture}", "-o", "{out}/ladder.svg"], ["ladder.svg"]),
    "plot census": (["plot", "census", "{capture}", "-o", "{out}/census.png"], ["census.png"]),
    "plot unknown flow (error)": (["plot", "ladder", "{capture}", "--flow", "9", "-o", "{out}/x.svg"], []),
    "report": (["report", "{capture}", "-o", "{out}/report.html"], ["report.html"]),
    "check": (["check", "{capture}"], []),
    "check directory": (["check", "{captures}"], []),
    "analyze pyshark": (["analyze", "{capture}", "--decoder", "pyshark"], []),
    # compiled, as for a large capture: numba's cache goes to the package's __pycache__, nowhere else
    "analyze compiled": (["analyze", "{capture}", "--format", "json", "-o", "{out}/c.json"], ["c.json"]),
}
ENVIRONMENT = {"analyze compiled": {"PCAPSTATE_NO_JIT": "0"}}
LIBRARY_CACHES = (".cache/matplotlib/", ".config/matplotlib/", ".cache/fontconfig/")


def listing(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file and directory under ``folder``: relative path -> (size, mtime in ns)."""
    return {str(p.relative_to(folder)) + ("/" if p.is_dir() else ""): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*")}


@pytest.mark.parametrize("case", list(CASES))
def test_outputs_only_where_asked(tmp_path, case):
    """The capture's directory (with its expectations), the working directory and the temporary
    directory are left as they were, and only the files named by -o appear."""
    if "pyshark" in case and shutil.which("tshark") is None:
        pytest.skip("tshark is not installed")
    arguments, expected = CASES[case]
    captures, work, out, home, tmp = (tmp_path / name for name in ("captures", "work", "out", "home", "tmp"))
    for folder in (captures, work, out, home, tmp):
        folder.mkdir()
    for name in ("fin_dropped.pcap", "fin_dropped.expected.json"):
        shutil.copy2(SAMPLES / name, captures / name)
    env = dict(os.environ, HOME=str(home), TMPDIR=str(tmp), TMP=str(tmp), TEMP=str(tmp))
    for variable in ("XDG_CACHE_HOME", "XDG_CONFIG_HOME", "MPLCONFIGDIR", "NUMBA_CACHE_DIR", "PCAPSTATE_NO_JIT"):
        env.pop(variable, None)
    env.update(ENVIRONMENT.get(case, {}))
    watched = {folder: listing(folder) for folder in (captures, work, tmp)}

    args = [a.format(capture=captures / "fin_dropped.pcap", captures=captures, out=out) for a in arguments]
    result = subprocess.run([sys.executable, "-m", "pcapstate", *args], capture_output=True, text=True,
                            cwd=work, env=env)
    assert "Traceback" not in result.stderr
    assert result.returncode == (2 if "(error)" in case else 0), result.stderr

    for folder, before in watched.items():
        assert listing(folder) == before, folder.name
    written = sorted(name for name in listing(out) if not name.endswith("/"))
    assert written == sorted(expected)
    in_home = [name for name in listing(home) if not name.endswith("/") and not name.startswith(LIBRARY_CACHES)]
    assert in_home == []


def test_check_does_not_write_missing_expectations(tmp_path):
    """Without --update, a capture with no expectations beside it is a failure, and no file is made."""
    captures, work = tmp_path / "captures", tmp_path / "work"
    captures.mkdir(), work.mkdir()
    shutil.copy2(SAMPLES / "refused.pcap", captures / "refused.pcap")
    before = listing(captures)
    result = subprocess.run([sys.executable, "-m", "pcapstate", "check", str(captures / "refused.pcap")],
                            capture_output=True, text=True, cwd=work)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert listing(captures) == before and listing(work) == {}
