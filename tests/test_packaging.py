"""A non-editable install finds zoo/, tasks/, training/ and leaderboards/ (shipped inside the wheel)."""

import subprocess
import sys
import textwrap
import zipfile

from .conftest import REPO


def test_wheel_carries_data_folders_and_finds_them(tmp_path):
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"),
         str(REPO)], capture_output=True, text=True, timeout=600,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("reclip_eval-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for required in ("reclip_eval/_data/zoo/reclip-demo.yaml", "reclip_eval/_data/tasks/shapes-zeroshot.yaml",
                     "reclip_eval/_data/tasks/shapes/classes.tsv", "reclip_eval/_data/training/mini-reclip-32.yaml",
                     "reclip_eval/_data/zoo/reclip-demo/model.safetensors"):
        assert required in names, required
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    script = textwrap.dedent("""
        from reclip_eval.paths import data_folder
        from reclip_eval.zoo.entries import list_entries
        from reclip_eval.eval.tasks import load_task
        from reclip_eval.train.recipe import load_recipe
        from reclip_eval.zoo.resolve import load_adapter
        assert "_data" in str(data_folder("zoo")), data_folder("zoo")
        assert "reclip-demo" in [e.name for e in list_entries()]
        load_task("shapes-zeroshot"); load_recipe("reclip-64-f20k")
        print(load_adapter("reclip-demo").image_size)
    """)
    # Run from an unrelated directory with only the extracted wheel on the path (no source checkout in sight).
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path,
                         env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "64"
