"""`python -m dolphin_assets.dev`: `dagster dev` on this repository's workspace, with DAGSTER_HOME under the
data home (``<DOLPHIN_HOME>/dagster``, dagster.yaml written on first use).

Started through ``env --default-signal=INT,TERM`` so that SIGINT/SIGTERM work even when the caller (make
in the background, CI, nohup) started us with those signals ignored: dagster dev then shuts down its
webserver, daemon and code-server processes cleanly.
"""

import argparse
import os
import shutil
import sys
from pathlib import Path

from dolphin.paths import data_home

REPO = Path(__file__).resolve().parent.parent

DAGSTER_YAML = """\
# Written by dolphin_assets.dev on first use; edit freely (it is not overwritten).
telemetry:
  enabled: false
run_queue:
  max_concurrent_runs: 2  # two cores: more concurrent runs only thrash
"""


def dagster_home(home: Path | None = None) -> Path:
    home = Path(home) if home else data_home() / "dagster"
    home.mkdir(parents=True, exist_ok=True)
    cfg = home / "dagster.yaml"
    if not cfg.exists():
        cfg.write_text(DAGSTER_YAML)
    return home


def command(host: str, port: int) -> list:
    exe = shutil.which("dagster", path=str(Path(sys.executable).parent)) or shutil.which("dagster")
    if not exe:
        raise SystemExit("dagster is not installed in this environment (make install)")
    return ["env", "--default-signal=INT,TERM", exe, "dev", "-w", str(REPO / "workspace.yaml"),
            "-h", host, "-p", str(port)]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=3000)
    args = ap.parse_args(argv)
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home())}
    cmd = command(args.host, args.port)
    print(f"DAGSTER_HOME={env['DAGSTER_HOME']}\n{' '.join(cmd)}", flush=True)
    os.chdir(REPO)
    os.execvpe(cmd[0], cmd, env)


if __name__ == "__main__":
    main()
