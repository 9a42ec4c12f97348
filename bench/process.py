"""`branchbot run` as a separate process, polling the Bot API stand-in served by this one."""

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.botapi.server import TEST_TOKEN, FakeBotAPI

REPOSITORY = Path(__file__).resolve().parents[1]
# Long enough for the largest database on a loaded machine; a run that takes longer is stuck.
START_LIMIT_SECONDS = 120.0


@dataclass
class RunningProcess:
    api: FakeBotAPI
    process: asyncio.subprocess.Process
    started: float  # time.monotonic() just before the process was made

    def seconds_to_first_poll(self) -> float | None:
        """From making the process to its first getUpdates, as the stand-in saw it."""
        polls = [call.time for call in self.api.calls if call.method == "getUpdates"]
        return min(polls) - self.started if polls else None

    def peak_rss_kib(self) -> int:
        """The process's peak resident set so far (VmHWM), in KiB."""
        return status_field(self.process.pid, "VmHWM")


def status_field(pid: int, name: str) -> int:
    """A size in KiB from /proc/<pid>/status, such as VmHWM or VmRSS."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1])
    raise LookupError(f"{name} is not in /proc/{pid}/status")


def branchbot_run(database_url: str, workdir: Path) -> AbstractAsyncContextManager[RunningProcess]:
    """`branchbot run` on the database, from its start to its first long poll; stopped after."""
    return serving(["-m", "bot", "run"], {"DATABASE_URL": database_url}, workdir)


def bare_bot_run(workdir: Path) -> AbstractAsyncContextManager[RunningProcess]:
    """bench/bare_bot.py the same way, for the memory any aiogram bot takes."""
    return serving(["-m", "bench.bare_bot"], {"PYTHONPATH": str(REPOSITORY)}, workdir)


@asynccontextmanager
async def serving(
    arguments: list[str], settings: dict[str, str], workdir: Path
) -> AsyncIterator[RunningProcess]:
    """Start `python <arguments>` against a new stand-in and wait for its first long poll."""
    api = FakeBotAPI()
    await api.start()
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in ("BOT_TOKEN", "DATABASE_URL", "BOT_API_URL", "LOG_LEVEL")
    }
    environment |= {
        "BOT_TOKEN": TEST_TOKEN,
        "BOT_API_URL": api.base_url,
        "POLLING_TIMEOUT": "1",
        "LOG_LEVEL": "WARNING",
        **settings,
    }
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *arguments,
        cwd=workdir,
        env=environment,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    running = RunningProcess(api, process, started)
    try:
        while running.seconds_to_first_poll() is None:
            if process.returncode is not None or time.monotonic() - started > START_LIMIT_SECONDS:
                raise RuntimeError(f"{' '.join(arguments)} did not start polling")
            await asyncio.sleep(0.005)
        yield running
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        _, errors = await asyncio.wait_for(process.communicate(), timeout=30)
        await api.stop()
        if process.returncode not in (0, -signal.SIGTERM):
            sys.stderr.write(errors.decode(errors="replace"))
            raise RuntimeError(f"{' '.join(arguments)} ended with {process.returncode}")
