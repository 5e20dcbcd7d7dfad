"""Start a real tritonserver on 127.0.0.1 for the tests: the binary and Python-backend stub of the nvidia-pytriton
wheel, installed by `make triton-venv` into build/triton-venv (or $SMSR_TRITON_VENV). The stub runs model.py with
that venv's Python (numpy<2, onnxruntime); our engine package comes from the path in the model's config."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def triton_venv() -> Path:
    return Path(os.environ.get("SMSR_TRITON_VENV", REPO_ROOT / "build" / "triton-venv"))


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _site_packages(venv: Path) -> Path | None:
    found = sorted(venv.glob("lib/python3*/site-packages/pytriton/tritonserver"))
    return found[0].parents[1] if found else None


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class TritonServer:
    """tritonserver with --model-control-mode=explicit serving `models` of `repo`; ports chosen free."""

    def __init__(self, venv: Path, repo: Path, models: list[str], workdir: Path):
        site = _site_packages(venv)
        if site is None:
            raise FileNotFoundError("no pytriton/tritonserver in %s" % venv)
        dist = site / "pytriton" / "tritonserver"
        ver = subprocess.run([str(venv_python(venv)), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, check=True).stdout.strip()
        stub = dist / "python_backend_stubs" / ver / "triton_python_backend_stub"
        if not stub.is_file():
            raise FileNotFoundError("pytriton has no Python-backend stub for Python %s" % ver)
        backends = workdir / "backends"
        shutil.copytree(dist / "backends", backends, dirs_exist_ok=True)
        shutil.copy(stub, backends / "python" / "triton_python_backend_stub")
        self.grpc_port, self.http_port, self.metrics_port = free_ports(3)
        env = dict(os.environ)
        env["PATH"] = "%s:%s" % (venv / "bin", env.get("PATH", ""))
        libs = site / "nvidia_pytriton.libs"
        # The stub links libpython3.X.so: use the venv interpreter's own (a pyenv/conda Python is not in ld's path).
        pylib = subprocess.run([str(venv_python(venv)), "-c", "import sysconfig; print(sysconfig.get_config_var("
                                "'LIBDIR') or '')"], capture_output=True, text=True, check=True).stdout.strip()
        env["LD_LIBRARY_PATH"] = ":".join(p for p in (env.get("LD_LIBRARY_PATH"), str(libs), pylib) if p)
        cmd = [str(dist / "bin" / "tritonserver"), "--model-repository=%s" % repo,
               "--backend-directory=%s" % backends, "--model-control-mode=explicit",
               "--grpc-address=127.0.0.1", "--grpc-port=%d" % self.grpc_port,
               "--http-address=127.0.0.1", "--http-port=%d" % self.http_port,
               "--metrics-address=127.0.0.1", "--metrics-port=%d" % self.metrics_port,
               "--allow-gpu-metrics=false", "--exit-timeout-secs=5"]
        cmd += ["--load-model=%s" % m for m in models]
        self.log_path = workdir / "tritonserver.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        self.url = "127.0.0.1:%d" % self.grpc_port

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def wait_ready(self, models: list[str], timeout: float = 180.0) -> None:
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException
        client = grpcclient.InferenceServerClient(self.url)
        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end:
            if self.proc.poll() is not None:
                raise RuntimeError("tritonserver exited with %s:\n%s" % (self.proc.returncode, self.log_tail()))
            try:
                if client.is_server_ready(client_timeout=2) and all(client.is_model_ready(m, client_timeout=2)
                                                                     for m in models):
                    return
            except InferenceServerException:
                pass
            time.sleep(0.5)
        raise TimeoutError("tritonserver not ready after %.0f s:\n%s" % (timeout, self.log_tail()))

    def metrics(self) -> str:
        import urllib.request
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.metrics_port, timeout=10) as r:
            return r.read().decode()

    def kill(self) -> None:
        """SIGKILL, as a crash would (the stub processes are in the server's session)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
        self.kill()
        self._log.close()


def metric(text: str, name: str, model: str) -> float:
    """Sum of a Prometheus counter for one model."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and 'model="%s"' % model in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


if __name__ == "__main__":  # manual use: python tests/triton_server.py REPO MODEL...; Ctrl-C stops it
    import tempfile
    srv = TritonServer(triton_venv(), Path(sys.argv[1]), sys.argv[2:], Path(tempfile.mkdtemp()))
    try:
        srv.wait_ready(sys.argv[2:])
        print("serving on", srv.url, flush=True)
        srv.proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        srv.stop()
