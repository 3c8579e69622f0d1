"""Fair scheduling between tenants (storage/tenants.py) on a real Redis: the cap across tenants
follows the slots the live pools publish, freed slots go to the tenant with the fewest dispatched
jobs per weight, and nothing is left held once slots free up."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from actors.capabilities import Availability, Publisher
from storage.jobs import Job, Records, new_id
from storage.tenants import Quotas, Tenants
from tests.helpers import expire_job_record

DEFAULTS = Quotas(requests_per_second=1000, max_queued=1000, max_running=1000, upload_bytes_per_day=1 << 40)


class Pools:
    """Live pools as supervisors publish them; `slots` reads them fresh, as after the API's cache."""

    def __init__(self, client: Any, namespace: str) -> None:
        self.client, self.namespace = client, namespace
        self.availability = Availability(client, namespace)

    def publish(self, pool_id: str, slots: int, queues: tuple[str, ...] = ("exports",)) -> Publisher:
        publisher = Publisher(self.client, self.namespace, pool_id, queues=queues, capabilities={},
                              ttl_s=3600, slots=slots)  # fmt: skip
        publisher.publish()
        return publisher

    def slots(self) -> dict[str, int]:
        self.availability.pools(fresh=True)
        return self.availability.slots()


@pytest.fixture
def pools(redis_client: Any, namespace: str, live_pool: Any) -> Pools:
    # The API tests' pool publishes no slots, as an older pool: while it lives, its queues have no cap.
    live_pool.withdraw()
    return Pools(redis_client, namespace)


@pytest.fixture
def tenants(records: Records, pools: Pools) -> Tenants:
    return Tenants(records, defaults=DEFAULTS, slots=pools.slots)


def _submit(
    records: Records, tenants: Tenants, tenant: str, n: int, queue: str = "exports"
) -> tuple[list[str], list[str]]:
    """(dispatched at once, held) of n new jobs of `tenant`."""
    sent, held = [], []
    for _ in range(n):
        job = Job(
            id=new_id(), format="png", inputs=(), options={}, created_at=0.0, tenant=tenant, queue=queue
        )
        records.create_job(job)
        (sent if tenants.dispatch(tenant, job.id) else held).append(job.id)
    return sent, held


def test_the_cap_across_tenants_follows_the_pools_slots(
    records: Records, tenants: Tenants, pools: Pools
) -> None:
    pools.publish("one", slots=2)
    a_sent, a_held = _submit(records, tenants, "a", 6)
    assert len(a_sent) == 2 and len(a_held) == 4  # a alone: every slot, no more
    b_sent, b_held = _submit(records, tenants, "b", 3)
    assert b_sent == [] and b_held  # no free slot: b waits in its backlog, not in the shared queue
    # A second pool of 3 slots starts: the next release fills the 3 new slots, fairest first.
    pools.publish("two", slots=3)
    released = tenants.release("", "")
    assert [t for t, _, _ in released] == ["b", "b", "a"]
    assert {t: tenants.counts(t)["dispatched"] for t in "ab"} == {"a": 3, "b": 2}
    # It stops publishing (gone): 5 dispatched for 2 slots; ends release nothing until below 2.
    pools.client.delete(f"{pools.namespace}:pools:two")
    assert tenants.release("a", a_sent[0]) == []
    assert tenants.release("a", a_sent[1]) == []
    assert tenants.release("b", b_held[0]) == []
    assert tenants.release("b", b_held[1]) == [("b", b_held[2], "exports")]  # b has 0 dispatched, a has 1


def test_a_freed_slot_goes_to_the_tenant_with_the_fewest_dispatched(
    records: Records, tenants: Tenants, pools: Pools
) -> None:
    pools.publish("one", slots=4)
    a_sent, a_held = _submit(records, tenants, "a", 20)
    _, b_held = _submit(records, tenants, "b", 5)
    # a's jobs end one by one: the newcomer takes each freed slot until it holds half the pool.
    assert tenants.release("a", a_sent[0]) == [("b", b_held[0], "exports")]
    assert tenants.release("a", a_sent[1]) == [("b", b_held[1], "exports")]
    assert tenants.release("a", a_sent[2]) == [("a", a_held[0], "exports")]  # 1:2, then 2:2; a's turn
    # b keeps its share as its own jobs end; a keeps the rest.
    assert tenants.release("b", b_held[0]) == [("b", b_held[2], "exports")]
    assert tenants.release("a", a_sent[3]) == [("a", a_held[1], "exports")]


def test_weights_share_the_slots_in_proportion(records: Records, tenants: Tenants, pools: Pools) -> None:
    pools.publish("one", slots=8)
    tenants.set_quotas("heavy", weight=3)
    assert tenants.quotas("heavy").weight == 3 and tenants.quotas("light").weight == 1
    light_sent, _ = _submit(records, tenants, "light", 30)
    _submit(records, tenants, "heavy", 30)
    for job_id in light_sent:  # every slot frees once: shares settle at 8 x 3/4 and 8 x 1/4
        tenants.release("light", job_id)
    assert {t: tenants.counts(t)["dispatched"] for t in ("heavy", "light")} == {"heavy": 6, "light": 2}


def test_a_tenant_below_its_share_leaves_the_rest_to_others_and_max_running_still_holds(
    records: Records, tenants: Tenants, pools: Pools
) -> None:
    pools.publish("one", slots=6)
    tenants.set_quotas("capped", max_running=2)
    small_sent, _ = _submit(records, tenants, "small", 1)
    capped_sent, _ = _submit(records, tenants, "capped", 10)
    big_sent, big_held = _submit(records, tenants, "big", 10)
    assert (len(small_sent), len(capped_sent), len(big_sent)) == (1, 2, 3)  # nothing idles
    assert tenants.release("small", small_sent[0]) == [
        ("big", big_held[0], "exports")
    ]  # capped is at its max


def test_without_published_slots_only_each_tenants_max_running_applies(records: Records) -> None:
    tenants = Tenants(records, defaults=dataclasses.replace(DEFAULTS, max_running=2))
    a_sent, a_held = _submit(records, tenants, "a", 4)
    b_sent, _ = _submit(records, tenants, "b", 4)
    assert (len(a_sent), len(b_sent)) == (2, 2)
    assert tenants.release("a", a_sent[0]) == [("a", a_held[0], "exports")]


def test_a_job_ended_without_its_release_frees_its_slot_at_the_next_repair(
    records: Records, tenants: Tenants, pools: Pools
) -> None:
    """A worker killed between a job's end and its release: the slot is not lost for good."""
    pools.publish("one", slots=1)
    (only,), _ = _submit(records, tenants, "quiet", 1)  # a tenant with no backlog of its own
    _, (held,) = _submit(records, tenants, "other", 1)
    records.finish_job(only)  # ended; its release never ran
    queued: list[str] = []
    assert tenants.repair(lambda job_id, _: queued.append(job_id)) == 1
    assert queued == [held] and tenants.held_job_ids() == set()
    assert tenants.counts("quiet")["dispatched"] == 0 and tenants.counts("other")["dispatched"] == 1


def test_each_queue_has_the_slots_of_the_pools_that_serve_it(
    records: Records, tenants: Tenants, pools: Pools
) -> None:
    """Slow Office jobs that fill the office pool hold no photo back, and photos hold no Office job."""
    pools.publish("photos", slots=2, queues=("exports",))
    pools.publish("office", slots=1, queues=("office",))
    assert pools.slots() == {"exports": 2, "office": 1}
    office_sent, office_held = _submit(records, tenants, "a", 3, queue="office")
    assert len(office_sent) == 1 and len(office_held) == 2
    photos_sent, photos_held = _submit(records, tenants, "b", 3)
    assert len(photos_sent) == 2 and len(photos_held) == 1
    # A photo ends: b's next photo takes its slot; a's next job is an Office job, and that pool is full.
    assert tenants.release("b", photos_sent[0]) == [("b", photos_held[0], "exports")]
    assert tenants.release("a", office_sent[0]) == [("a", office_held[0], "office")]


def test_a_held_job_past_its_retention_is_dropped_and_the_next_takes_the_slot(
    records: Records, tenants: Tenants, pools: Pools
) -> None:
    pools.publish("one", slots=1)
    (first,), (expired, third) = _submit(records, tenants, "a", 3)
    expire_job_record(records.redis, records.namespace, expired)
    assert tenants.release("a", first) == [("a", third, "exports")]
    assert (tenants.counts("a")["dispatched"], tenants.counts("a")["held"]) == (1, 0)


def test_a_queue_served_by_a_pool_that_publishes_no_slots_has_no_cap(
    records: Records, tenants: Tenants, pools: Pools, live_pool: Any
) -> None:
    """An older pool beside a newer one (a rolling upgrade): its threads are not starved."""
    pools.publish("new", slots=1)
    live_pool.publish()
    assert pools.slots() == {}
    sent, held = _submit(records, tenants, "a", 3)
    assert (len(sent), held) == (3, [])


def test_a_held_job_that_ends_canceled_leaves_its_backlog_and_the_held_count(
    records: Records, tenants: Tenants, pools: Pools
) -> None:
    pools.publish("one", slots=1)
    (running,), (canceled, later) = _submit(records, tenants, "a", 3)
    held = f"{records.namespace}:tenants:held:exports"
    assert records.redis.llen(held) == 2
    assert tenants.release("a", canceled) == []  # no slot freed: nothing released
    assert tenants.held_job_ids() == {later} and records.redis.llen(held) == 1
    assert tenants.release("a", running) == [("a", later, "exports")]
    assert records.redis.llen(held) == 0


def test_held_jobs_in_either_record_layout_go_to_their_own_queue(records: Records, tenants: Tenants) -> None:
    # The scheduling scripts read a held job's queue from its record: under its tenant
    # (`{ns}:tenant:{t}:job:{id}`), or under `{ns}:job:{id}` for a record stored before that.
    tenants.set_quotas("a", max_running=1)
    (first,), _ = _submit(records, tenants, "a", 1)
    new, old = (Job(id=new_id(), format="pdf", inputs=(), options={}, created_at=0.0, tenant="a", queue="office")
                for _ in range(2))  # fmt: skip
    for job in (new, old):
        records.create_job(job)
    records.redis.rename(records.job_key("a", old.id), records.legacy_job_key(old.id))
    records.redis.delete(records.job_tenant_key(old.id))
    assert not tenants.dispatch("a", new.id) and not tenants.dispatch("a", old.id)
    assert records.redis.llen(f"{records.namespace}:tenants:held:office") == 2
    assert tenants.release("a", first) == [("a", new.id, "office")]
    assert tenants.release("a", new.id) == [("a", old.id, "office")]
    assert records.redis.llen(f"{records.namespace}:tenants:held:office") == 0
