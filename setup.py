"""Everything is in pyproject.toml, but for one file setuptools cannot place from there: the
start-up hook `granite_batch_cpu_torch.pth`, which must sit at the top of site-packages in
regular and editable installs alike (why: pipeline/cpu_torch.py)."""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

PTH = "granite_batch_cpu_torch.pth"


class BuildPyWithPth(build_py):
    """Regular wheels: the .pth goes to the root of the wheel, i.e. site-packages."""

    def run(self) -> None:
        super().run()
        self.copy_file(PTH, str(Path(self.build_lib) / PTH), preserve_mode=False)


class EditableWheelWithPth(editable_wheel):
    """Editable wheels hold only a path finder; everything under their unpacked root is written
    into the wheel (setuptools >= 64), so the .pth goes there."""

    def _run_build_commands(self, dist_name, unpacked_wheel, build_lib, tmp_dir):  # type: ignore[no-untyped-def]
        result = super()._run_build_commands(dist_name, unpacked_wheel, build_lib, tmp_dir)
        self.copy_file(PTH, str(Path(unpacked_wheel) / PTH), preserve_mode=False)
        return result


setup(cmdclass={"build_py": BuildPyWithPth, "editable_wheel": EditableWheelWithPth})
