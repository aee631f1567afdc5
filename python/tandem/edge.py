"""EdgeSession with a streaming iterator on top of the C++ session."""
import queue
import threading
from typing import Any, Generator, List, Optional, Sequence, Union

from . import _tandem

__all__ = ["EdgeSession"]

_DONE = object()


class EdgeSession(_tandem.EdgeSession):
    __doc__ = _tandem.EdgeSession.__doc__

    def stream(self, prompt: Union[str, Sequence[int]], **options: Any
               ) -> Generator[Union[_tandem.TokenRecord, _tandem.Rollback], None,
                              _tandem.GenerationResult]:
        """Yields each TokenRecord as it is decided; returns the GenerationResult.

        Takes the same arguments as generate() (except on_token and
        on_rollback). Generation runs on a background thread while this
        generator waits, so the GIL is free and Ctrl-C interrupts the wait. The
        last record may be a text-only one (id -1, decided_by 'text') carrying
        text held back until the end. Leaving the loop early (break, an
        exception, Ctrl-C) cancels generation and waits for the background
        thread before returning.

            for tok in session.stream("In the beginning", max_new_tokens=32):
                print(tok.text, end="", flush=True)

        With delivery="eager" (collaborative mode) drafts stream at once
        (TokenRecord.provisional) and a Rollback record comes, in order, when
        the cloud replaces one: take back its `text` (or its last `tokens`
        records), then go on with what follows.

            shown = ""
            for item in session.stream(prompt, delivery="eager"):
                if isinstance(item, tandem.Rollback):
                    shown = shown[:len(shown) - len(item.text)]
                else:
                    shown += item.text
        """
        if "on_token" in options or "on_rollback" in options:
            raise TypeError("stream() yields the tokens and rollbacks; it takes no "
                            "on_token or on_rollback")
        records: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
        outcome: List[Any] = []

        def run() -> None:
            try:
                outcome.append(("ok", self.generate(prompt, on_token=records.put,
                                                    on_rollback=records.put, **options)))
            except BaseException as e:  # handed to the consumer below
                outcome.append(("error", e))
            finally:
                records.put(_DONE)

        worker = threading.Thread(target=run, name="tandem-stream", daemon=True)
        worker.start()
        try:
            while True:
                item = records.get()
                if item is _DONE:
                    break
                yield item
        finally:
            if worker.is_alive():
                self.cancel()
                worker.join()
        kind, value = outcome[0]
        if kind == "error":
            raise value
        return value

    def __repr__(self) -> str:
        mode = "collaborative" if self.collaborative else "standalone"
        return f"EdgeSession(split={self.split}, exits={self.exits}, measure='{self.measure}', {mode})"
