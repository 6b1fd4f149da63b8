"""Build step of pcapstate: compile the entry points ahead of time (pcapstate/aot_build.py).

Everything else about the package is declared in pyproject.toml.  The
extension ``pcapstate._core`` has no C sources: numba compiles it from the
Python sources (``python3 -m pcapstate.aot_build``).  When that fails (no C
compiler, no numba), the install goes on without it and pcapstate compiles
with numba at run time instead, as before: slower to start, same results.
"""
import os
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))


class BuildPrebuiltCore(build_ext):
    def build_extension(self, ext):
        target_dir = os.path.dirname(os.path.abspath(self.get_ext_fullpath(ext.name)))
        os.makedirs(target_dir, exist_ok=True)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
        env.pop("PCAPSTATE_NO_JIT", None)
        command = [sys.executable, "-m", "pcapstate.aot_build", "--output-dir", target_dir]
        if subprocess.run(command, cwd=HERE, env=env).returncode != 0:
            print("pcapstate: warning: the prebuilt core was not built; pcapstate will compile with numba "
                  "at run time instead", file=sys.stderr)

    def get_outputs(self):
        # the manifest beside the module, and nothing that a failed build did not make
        outputs = [p for p in super().get_outputs() if os.path.exists(p)]
        return outputs + [os.path.join(os.path.dirname(p), "_core.json") for p in outputs]

    def copy_extensions_to_source(self):
        # an editable install: the module and its manifest into the source tree, when they were built,
        # and the sources byte-compiled there, as pip does for an installed package (each run would
        # compile every module again where PYTHONDONTWRITEBYTECODE is set)
        import compileall

        compileall.compile_dir(os.path.join(HERE, "pcapstate"), quiet=1)
        build_py = self.get_finalized_command("build_py")
        for ext in self.extensions:
            inplace_file, regular_file = self._get_inplace_equivalent(build_py, ext)
            if os.path.exists(regular_file):
                self.copy_file(regular_file, inplace_file, level=self.verbose)
                manifest = os.path.join(os.path.dirname(regular_file), "_core.json")
                self.copy_file(manifest, os.path.join(os.path.dirname(inplace_file), "_core.json"), level=self.verbose)


setup(ext_modules=[Extension("pcapstate._core", sources=[])], cmdclass={"build_ext": BuildPrebuiltCore})
