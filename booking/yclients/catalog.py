"""Match a YCLIENTS company's services and staff to the config catalog (pure).

The dialogue keeps speaking the config's ids and names (its synonyms and aliases drive
the extractor); YCLIENTS supplies what is true in the salon: which of those services
and masters exist online, who does what, the prices and the durations
(`seance_length`, seconds, as given by `book_services` with a staff filter).
By default a YCLIENTS title/name matches a config service name/master name
case-insensitively; `service_map` / `staff_map` ({YCLIENTS id: catalog id or master
name}) override that.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from booking.catalog import Catalog, Master, Service


@dataclass(frozen=True, slots=True)
class CatalogMap:
    """The matched catalog and the id maps both ways.

    `unmatched_services` / `unmatched_staff`: YCLIENTS titles/names nothing maps to;
    `missing`: config services/masters absent from YCLIENTS (not bookable by the bot).
    """

    catalog: Catalog
    service_ids: dict[str, int]
    staff_ids: dict[str, int]
    service_by_yid: dict[int, str]
    master_by_yid: dict[int, str]
    unmatched_services: tuple[str, ...] = ()
    unmatched_staff: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()


def _fold(s: str) -> str:
    return " ".join(s.casefold().replace("ё", "е").split())


def build_catalog(
    config: Catalog,
    services: Sequence[Mapping[str, Any]],
    staff: Sequence[Mapping[str, Any]],
    staff_services: Mapping[int, Sequence[Mapping[str, Any]]],
    *,
    service_map: Mapping[int, str] | None = None,
    staff_map: Mapping[int, str] | None = None,
) -> CatalogMap:
    """The catalog the bot may book in this company.

    `services`: `book_services` without a staff filter; `staff`: `book_staff`;
    `staff_services`: `book_services?staff_id=` per staff id (what each one does, with
    `seance_length`). Raises ValueError when a map names an unknown catalog id/master.
    """
    service_map = dict(service_map or {})
    staff_map = dict(staff_map or {})
    by_name = {_fold(s.name): s for s in config.services}
    by_id = {s.id: s for s in config.services}
    for yid, sid in service_map.items():
        if sid not in by_id:
            raise ValueError(f"booking.yclients.service_map[{yid}]: no service {sid!r}")
    masters = {_fold(m.name): m for m in config.masters}
    for yid, name in staff_map.items():
        if _fold(name) not in masters:
            raise ValueError(f"booking.yclients.staff_map[{yid}]: no master {name!r}")

    service_by_yid: dict[int, str] = {}
    unmatched_services: list[str] = []
    for s in services:
        yid, title = int(s["id"]), str(s.get("title") or "")
        sid = service_map.get(yid) or (by_name[_fold(title)].id if _fold(title) in by_name else "")
        if sid:
            service_by_yid[yid] = sid
        else:
            unmatched_services.append(title)
    master_by_yid: dict[int, str] = {}
    unmatched_staff: list[str] = []
    for st in staff:
        yid, name = int(st["id"]), str(st.get("name") or "")
        if st.get("bookable") is False:
            continue
        mapped = staff_map.get(yid) or name
        if _fold(mapped) in masters:
            master_by_yid[yid] = masters[_fold(mapped)].name
        else:
            unmatched_staff.append(name)

    # Durations and prices: YCLIENTS is the truth. A per-staff length is taken from the
    # first staff doing the service (the catalog has one duration per service).
    length: dict[str, int] = {}
    price: dict[str, int] = {}
    for s in services:
        sid = service_by_yid.get(int(s["id"]))
        if sid and s.get("price_min") is not None:
            price[sid] = int(float(s["price_min"]))
    does: dict[str, set[str]] = {}
    for staff_yid, offered in staff_services.items():
        master = master_by_yid.get(int(staff_yid))
        if master is None:
            continue
        for s in offered:
            sid = service_by_yid.get(int(s["id"]))
            if sid is None:
                continue
            does.setdefault(master, set()).add(sid)
            seconds = int(s.get("seance_length") or 0)
            if seconds and sid not in length:
                length[sid] = math.ceil(seconds / 60)
            if sid not in price and s.get("price_min") is not None:
                price[sid] = int(float(s["price_min"]))

    offered_ids = {sid for sids in does.values() for sid in sids}
    new_services: list[Service] = []
    for svc in config.services:
        if svc.id in offered_ids:
            new_services.append(
                replace(
                    svc,
                    duration_min=length.get(svc.id, svc.duration_min),
                    price=price.get(svc.id, svc.price),
                )
            )
    new_masters: list[Master] = [
        replace(m, services=frozenset(does[m.name])) for m in config.masters if does.get(m.name)
    ]
    missing = [s.id for s in config.services if s.id not in offered_ids] + [
        m.name for m in config.masters if m.name not in does
    ]
    catalog = replace(config, services=tuple(new_services), masters=tuple(new_masters))
    return CatalogMap(
        catalog=catalog,
        service_ids={sid: yid for yid, sid in service_by_yid.items()},
        staff_ids={name: yid for yid, name in master_by_yid.items()},
        service_by_yid=service_by_yid,
        master_by_yid=master_by_yid,
        unmatched_services=tuple(unmatched_services),
        unmatched_staff=tuple(unmatched_staff),
        missing=tuple(missing),
    )
