"""Child process for the kill -9 test: drains an outbox into a SensorThings server the way the
pipeline's sink runner does (write a batch, then move the cursor; RetryableError keeps it).

    python -m tests.integration.sta_child DATA_DIR URL DATA_ARRAY [crash-after-first-write]

With `crash-after-first-write` it SIGKILLs itself after the first write returned and before the
cursor moved: the one moment where a resend is certain. Prints one JSON line per batch.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from gateway.outbox import Outbox
from gateway.sinks.base import RetryableError
from tests.integration.sta_helpers import load, make_sink


async def main(data_dir: Path, url: str, data_array: str, crash: bool) -> None:
    cfg, plan = load(data_dir)
    outbox = Outbox(data_dir / "outbox.sqlite", sinks=["sta"])
    sink = make_sink(cfg, plan, url, data_array=data_array, batch_size=200)
    await sink.start()
    while rows := outbox.read("sta", sink.batch_size):
        try:
            result = await sink.write(rows)
        except RetryableError as e:
            print(json.dumps({"retry": str(e)}), flush=True)
            await asyncio.sleep(0.5)
            continue
        if crash:
            os.kill(os.getpid(), signal.SIGKILL)
        outbox.advance("sta", rows[-1].seq)
        print(json.dumps({"written": result.written, "rejected": len(result.rejected),
                          "already_there": sink.already_there, "cursor": rows[-1].seq}), flush=True)  # fmt: skip
    await sink.close()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2], sys.argv[3], "crash-after-first-write" in sys.argv[4:]))
