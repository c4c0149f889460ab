"""One kind of hook: a ScorerControl; `Hooks` makes one of plain functions, on top of another control."""

from __future__ import annotations

from galleryrank.consumer.stream.scorer import Hooks, ScorerControl


class Recording(ScorerControl):
    def __init__(self, stop: bool):
        self.calls: list[str] = []
        self.stop = stop

    async def on_assigned(self, scorer, assigned) -> None:
        self.calls.append("base assigned")

    def accept(self, scorer, record) -> bool:
        return record != "end"

    async def on_tick(self, scorer) -> None:
        self.calls.append("base tick")

    async def stop_at(self, scorer) -> bool:
        return self.stop


async def test_hooks_run_after_the_base_control_and_stop_when_either_says_so():
    seen: list[str] = []

    async def on_assigned(scorer, assigned) -> None:
        seen.append(f"hook assigned {sorted(assigned)}")

    async def stop_at(scorer) -> bool:
        return scorer == "done"

    base = Recording(stop=False)
    hooks = Hooks(stop_at=stop_at, on_assigned=on_assigned).over(base)
    await hooks.on_assigned("scorer", {1, 2})
    await hooks.on_tick("scorer")
    assert base.calls == ["base assigned", "base tick"] and seen == ["hook assigned [1, 2]"]
    assert hooks.accept("scorer", "r") and not hooks.accept("scorer", "end")  # the base decides what is read
    assert not await hooks.stop_at("running") and await hooks.stop_at("done")
    assert await Hooks(base=Recording(stop=True)).stop_at("running")  # the base can stop it too
    assert not await Hooks().stop_at("running")  # no hook: a plain scorer
