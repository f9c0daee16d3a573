"""Compare Russian date/time libraries on the phrase table (tests/when_phrases.py).

Each library reads every phrase relative to the table's NOW; a row counts when the
(date, time) it yields equals the expected one (a library that yields no time for a
date-only row, or no date for a time-only row, is right on that part). Run from the
repository root, in an environment that has the libraries:

    pip install dateparser natasha number-parser ru-word2number
    PYTHONPATH=. python scripts/measure_when_libs.py

Libraries that are not installed are skipped. The figures are in docs/booking.md.
"""

from __future__ import annotations

import sys
import time as clock
from collections.abc import Callable
from datetime import date, time

from tests.when_phrases import NOW, PHRASES

Reader = Callable[[str], tuple[date | None, time | None]]


def ours() -> Reader:
    """booking.extract.when."""
    from booking.extract.when import parse_when

    def read(p: str) -> tuple[date | None, time | None]:
        w = parse_when(p, NOW.date(), now=NOW, hours=(time(9), time(21)))
        return w.date, w.time

    return read


def dateparser_reader() -> Reader:
    """dateparser.search.search_dates with Russian and the table's NOW."""
    from dateparser.search import search_dates

    settings = {
        "RELATIVE_BASE": NOW.replace(tzinfo=None),
        "PREFER_DATES_FROM": "future",
        "RETURN_TIME_AS_PERIOD": True,
    }

    def read(p: str) -> tuple[date | None, time | None]:
        found = search_dates(p, languages=["ru"], settings=settings) or []
        if not found:
            return None, None
        _said, dt = found[-1]
        has_date = dt.date() != NOW.date() or any(w in p for w in ("сегодня", "через"))
        t = dt.time().replace(second=0, microsecond=0)
        has_time = t != time(0) and (t != NOW.time().replace(tzinfo=None) or "час" in p)
        return (dt.date() if has_date else None), (t if has_time else None)

    return read


def natasha_reader() -> Reader:
    """natasha's DatesExtractor (day, month, year facts; no times)."""
    from natasha import DatesExtractor, MorphVocab

    extractor = DatesExtractor(MorphVocab())

    def read(p: str) -> tuple[date | None, time | None]:
        matches = list(extractor(p))
        if not matches:
            return None, None
        f = matches[-1].fact
        if f.day is None:
            return None, None
        month = f.month or NOW.month
        year = f.year or (NOW.year if (month, f.day) >= (NOW.month, NOW.day) else NOW.year + 1)
        try:
            return date(year, month, f.day), None
        except ValueError:
            return None, None

    return read


def main() -> int:
    """Print the comparison table."""
    readers: dict[str, Callable[[], Reader]] = {
        "booking.extract.when (ours)": ours,
        "dateparser": dateparser_reader,
        "natasha DatesExtractor": natasha_reader,
    }
    dated = [r for r in PHRASES if r[1] is not None]
    timed = [r for r in PHRASES if r[2] is not None]
    print(f"{len(PHRASES)} phrases ({len(dated)} with a date, {len(timed)} with a time)\n")
    print(f"{'library':<30} {'both':>6} {'dates':>7} {'times':>7} {'ms/phrase':>10}")
    for name, make in readers.items():
        try:
            read = make()
        except ImportError as e:
            print(f"{name:<30} not installed ({e.name})")
            continue
        t0 = clock.perf_counter()
        got = {p: read(p) for p, _, _ in PHRASES}
        ms = (clock.perf_counter() - t0) * 1000 / len(PHRASES)
        both = sum(got[p] == (d, t) for p, d, t in PHRASES)
        dates = sum(got[p][0] == d for p, d, _ in dated)
        times = sum(got[p][1] == t for p, _, t in timed)
        print(
            f"{name:<30} {both:>4}/{len(PHRASES)} {dates:>3}/{len(dated)} {times:>3}/{len(timed)}"
            f" {ms:>10.2f}"
        )
    numbers_in_words()
    extract_latency()
    return 0


def extract_latency(rounds: int = 3) -> None:
    """booking.extract.extract on a whole first utterance built around each phrase
    (service, the phrase, a name, a phone): median and p99 in ms."""
    import statistics

    from booking.catalog import Catalog
    from booking.extract import extract

    catalog = Catalog.from_config(None)
    extract("прогрев завтра в 5", catalog, NOW.date(), now=NOW)
    times: list[float] = []
    for _ in range(rounds):
        for p, _, _ in PHRASES:
            text = f"Хочу подстричься {p}, меня зовут Анна, телефон 8 916 123-45-67"
            t0 = clock.perf_counter()
            extract(text, catalog, NOW.date(), now=NOW)
            times.append((clock.perf_counter() - t0) * 1000)
    times.sort()
    print(
        f"\nextract() on a whole utterance, {len(times)} runs: median "
        f"{statistics.median(times):.2f} ms, p99 {times[int(len(times) * 0.99)]:.2f} ms"
    )


def numbers_in_words() -> None:
    """Numbers-in-words parsers on the forms clock times and dates use."""
    forms = {
        "двадцать пять": 25,
        "пятнадцать": 15,
        "двадцати": 20,
        "десяти": 10,
        "пятого": 5,
        "двадцать пятого": 25,
        "сорок пять": 45,
        "трёх": 3,
    }
    print(f"\nnumbers in words ({len(forms)} forms): {', '.join(forms)}")
    try:
        from ru_word2number import w2n as ru_w2n

        ok = 0
        for text, want in forms.items():
            try:
                ok += ru_w2n.word_to_num(text) == want
            except Exception:
                pass
        print(f"  ru-word2number: {ok}/{len(forms)}")
    except ImportError:
        print("  ru-word2number: not installed")
    try:
        from number_parser import parse_number

        ok = sum(parse_number(t, language="ru") == w for t, w in forms.items())
        print(f"  number-parser:  {ok}/{len(forms)}")
    except ImportError:
        print("  number-parser: not installed")
    from booking.extract.numbers import number_items
    from booking.extract.text import tokenize

    ok = 0
    for text, want in forms.items():
        items = number_items(tokenize(text), text)
        ok += len(items) == 1 and next(iter(items.values())).value == want
    print(f"  booking.extract.numbers (ours, on pymorphy3 lexemes): {ok}/{len(forms)}")


if __name__ == "__main__":
    sys.exit(main())
