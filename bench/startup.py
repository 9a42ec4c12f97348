"""Start-up time of `branchbot run`: from making the process to its first getUpdates call.

The largest network of bench/dataset.py is compared with an empty database whose schema is
already up to date, so both runs do the same work apart from what the data costs (Alembic finds
nothing to do on either). A brand-new file, which `run` migrates first, and a process that only
imports the bot's modules are shown for reference. Runs of the cases alternate, so load from
elsewhere falls on each alike; medians are printed.

    .venv/bin/python -m bench.startup [--runs 5]
"""

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.dataset import SIZES, build, migrate_empty, sqlite_url
from bench.process import branchbot_run


async def imports_alone(workdir: Path) -> float:
    """A process that imports what `branchbot run` imports, and exits."""
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import bot.cli, bot.app", cwd=workdir
    )
    if await process.wait() != 0:
        raise RuntimeError("the bot's modules did not import")
    return time.monotonic() - started


async def first_poll(database: Path, workdir: Path) -> float:
    async with branchbot_run(sqlite_url(database), workdir) as running:
        seconds = running.seconds_to_first_poll()
    assert seconds is not None
    return seconds


async def main(runs: int) -> None:
    largest = SIZES[-1]
    with tempfile.TemporaryDirectory() as directory:
        workdir = Path(directory)
        large = workdir / "large.sqlite3"
        empty = workdir / "empty.sqlite3"
        await build(largest, large)
        await migrate_empty(empty)
        seconds: dict[str, list[float]] = {"empty": [], "large": [], "new": [], "imports": []}
        # One run first, unmeasured: the interpreter's files into the page cache.
        await first_poll(empty, workdir)
        for number in range(runs):
            for case in ("empty", "large") if number % 2 else ("large", "empty"):
                database = large if case == "large" else empty
                seconds[case].append(await first_poll(database, workdir))
            seconds["new"].append(await first_poll(workdir / f"new-{number}.sqlite3", workdir))
            seconds["imports"].append(await imports_alone(workdir))

    medians = {case: statistics.median(values) for case, values in seconds.items()}
    print(f"branchbot run to its first getUpdates; median of {runs} runs each, alternating")
    print(f"{'database':<58}{'seconds':>9}")
    print(f"{'empty, schema up to date':<58}{medians['empty']:>9.2f}")
    label = (
        f"largest: {largest.portals} portals, {largest.people_in_all} people, schema up to date"
    )
    print(f"{label:<58}{medians['large']:>9.2f}")
    print(f"{'new file, migrated by run (for reference)':<58}{medians['new']:>9.2f}")
    print(f"{'imports alone, no database (for reference)':<58}{medians['imports']:>9.2f}")
    ratio = medians["large"] / medians["empty"]
    print(f"{'largest/empty (target <= 1.5)':<58}{ratio:>9.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    asyncio.run(main(parser.parse_args().runs))
