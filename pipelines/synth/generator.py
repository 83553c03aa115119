"""A synthetic city: partner extracts in the contract's formats, mess included, plus ground truth.

`generate_city(out, people=..., seed=..., as_of=...)` writes

    out/landing/        the partners' drop, exactly as `shared/contracts/README.md` describes
    out/ground_truth/   persons.csv, records.csv (true person per record), planted_cases.csv,
                        expected_rejects.csv

Everything is driven by one `random.Random(seed)`, so a seed always gives the same bytes.

Timeline: each incremental feed has a backfill extract dated `as_of - 28 days` holding all
history reported before it, then weekly extracts up to `as_of`. Snapshot feeds (residents,
enrollment) have an older and a current snapshot.
"""

from __future__ import annotations

import csv
import io
import random
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from unidecode import unidecode

from pipelines import feeds
from pipelines.synth import names as N

WEEKS = 4
HISTORY_DAYS = 3 * 365
MESS_LEVELS = {"clean": 0.0, "normal": 1.0, "messy": 2.0}

# each delivery's columns: the contract's, from the feed registry (pipelines/feeds.py)
HEALTH_COLS = feeds.HEALTH.columns
INSPECTION_COLS = feeds.INSPECTIONS.columns
RESIDENT_COLS = feeds.RESIDENTS.columns
ENROLLMENT_COLS = feeds.ENROLLMENT.columns
SERVICE_COLS = feeds.SERVICES.columns
CONTRACT_COLS = feeds.CONTRACTS.columns

CONTRACTS = [
    ("HHN-2025-014", "HHN", "Harbor Home Health Nurses", "LEAD_CASE_MGMT;HOME_VISIT", 1_450_000,
     ("Every child with a confirmed elevated blood lead level gets nurse case management "
      "within the local window, and a lower next test within 12 months.")),
    ("FSC-2025-007", "FSC", "Family Support Collaborative",
     "HOME_VISIT;DEV_SCREEN;HOUSING_NAV;EARLY_INTERVENTION", 820_000,
     "Families of young children get home visits and developmental screening."),
    ("WIC-2025-002", "WIC", "City WIC Program", "NUTRITION", 390_000,
     "Children under 5 get nutrition counselling, including iron and calcium for lead."),
]
# The programs providers ask the data lab about: (name, service recorded at the start, the
# planted effect on the chance of a follow-up blood lead test within 180 days of the start).
PROGRAMS = {
    "HHN": ("Lead-Safe Home Nursing", "HOME_VISIT", 0.20),
    "FSC": ("Family Home Visiting", "HOME_VISIT", 0.0),
    "WIC": ("Lead Nutrition Classes", "NUTRITION", -0.15),
}
DATALAB_COLS = feeds.DATALAB.columns
# Per-provider habits the contract allows: date format and gender vocabulary.
PROVIDER_DOB_FORMAT = {"HHN": "%Y-%m-%d", "FSC": "%m/%d/%Y", "WIC": "%Y-%m-%d"}
PROVIDER_GENDER = {"HHN": {"M": "M", "F": "F"}, "FSC": {"M": "Male", "F": "Female"},
                   "WIC": {"M": "boy", "F": "girl"}}


# ---------------------------------------------------------------- the population


@dataclass
class Address:
    number: int
    predir: str | None
    street: str
    stype: str
    unit: str | None
    zip: str
    parcel: str

    def canonical(self) -> str:
        parts = [str(self.number), self.predir or "", self.street, self.stype]
        return " ".join(p for p in parts if p)


@dataclass
class Person:
    tid: str
    first: str
    middle: str
    last: str
    dob: date
    sex: str
    household: Household
    relationship: str
    medicaid: str | None = None
    patient_id: str | None = None
    alt_last: str | None = None  # maiden name, custody change: used by some feeds
    student_id: str | None = None
    client_ids: dict[str, str] = field(default_factory=dict)
    # a planted school record: grade, entry, exit, iep_old (older snapshot), iep_now
    school: dict | None = None


@dataclass
class Household:
    hid: str
    address: Address
    assisted: bool
    members: list[Person] = field(default_factory=list)
    prev_address: Address | None = None
    moved_on: date | None = None  # when they moved from prev_address to address
    left_assisted: bool = False  # gone from the newest residents snapshot

    def address_on(self, day: date) -> Address:
        if self.prev_address is not None and self.moved_on is not None and day < self.moved_on:
            return self.prev_address
        return self.address


def _months(d: date, n: float) -> date:
    return d + timedelta(days=round(n * 30.4375))


def age_months(dob: date, on: date) -> int:
    m = (on.year - dob.year) * 12 + (on.month - dob.month)
    return m - 1 if on.day < dob.day else m


class City:
    """Builds the people, the events each agency records, and the rows of every file."""

    def __init__(self, people: int, seed: int, as_of: date, mess: float,
                 lead_burden: float = 1.0, program_reach: float = 1.0) -> None:
        self.rng = random.Random(seed)
        # a town of old housing has more elevated screens; a small town's programs reach more
        # of its children (both 1.0 for the ordinary city: the same draws, the same city)
        self.lead_burden = lead_burden
        self.program_reach = program_reach
        self.n = people
        self.as_of = as_of
        self.mess = mess
        self.start = as_of - timedelta(days=HISTORY_DAYS)
        self.extracts = [as_of - timedelta(days=7 * k) for k in range(WEEKS, -1, -1)]
        self.households: list[Household] = []
        self.persons: list[Person] = []
        self.buildings: dict[tuple, str] = {}
        self._seq: dict[str, int] = {}
        # events, each with the date it enters an extract
        self.tests: list[dict] = []  # health rows (+ _pid, _reported)
        self.inspections: list[dict] = []
        self.services: list[dict] = []
        self.planted: list[dict] = []
        self.used_ids: dict[str, set[int]] = {}
        self.lab_clients: dict[str, list[tuple[Person, date]]] = {}  # program -> (child, start)
        # program -> each client's joining chances of every program (for the usual-care truth)
        self.lab_chances: dict[str, list[dict[str, float]]] = {}

    # ------------------------------------------------------------ ids and helpers
    def new_id(self, kind: str, width: int) -> int:
        """Random-looking unique ids, like real agency systems (not sequential)."""
        used = self.used_ids.setdefault(kind, set())
        while True:
            v = self.rng.randrange(10 ** (width - 1), 10**width)
            if v not in used:
                used.add(v)
                return v

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def new_address(self) -> Address:
        r = self.rng
        number = r.randint(1, 4999)
        predir = r.choice(list(N.DIRECTIONS)) if r.random() < 0.2 else None
        street, stype = r.choice(N.STREETS), r.choice(N.STREET_TYPES)
        zipc = r.choice(N.ZIPS)
        unit = None
        if r.random() < 0.35:
            unit = r.choice([str(r.randint(1, 12)), f"{r.randint(1, 4)}{r.choice('ABCD')}"])
        key = (number, predir, street, stype)
        parcel = self.buildings.setdefault(key, f"{r.randint(1, 99):02d}-{self.new_id('parcel', 6)}")
        return Address(number, predir, street, stype, unit, zipc, parcel)

    def new_person(self, hh: Household, rel: str, dob: date, sex: str | None = None,
                   last: str | None = None) -> Person:
        r = self.rng
        sex = sex or r.choice("MF")
        first = r.choice(N.FIRST_M if sex == "M" else N.FIRST_F)
        pool = N.FIRST_M if sex == "M" else N.FIRST_F
        middle = r.choice(pool) if r.random() < 0.6 else ""
        last = last or r.choice(N.LAST)
        p = Person(f"TP{len(self.persons) + 1:08d}", first, middle, last, dob, sex, hh, rel)
        p.medicaid = f"MA{self.new_id('medicaid', 9)}" if r.random() < 0.55 else None
        if rel == "SPOUSE" and sex == "F" and r.random() < 0.3:
            p.alt_last = r.choice(N.LAST)  # maiden name in some agency's records
        hh.members.append(p)
        self.persons.append(p)
        return p

    # ------------------------------------------------------------ population
    def build_population(self) -> None:
        r = self.rng
        while len(self.persons) < self.n:
            hh = Household(f"H{self.new_id('household', 7)}", self.new_address(),
                           assisted=r.random() < 0.25)
            if r.random() < 0.15:  # moved within the history window
                hh.prev_address = self.new_address()
                hh.moved_on = self.start + timedelta(days=r.randint(60, HISTORY_DAYS - 30))
            if hh.assisted and r.random() < 0.04:
                hh.left_assisted = True
            self.households.append(hh)
            family = r.choice(N.LAST)
            if r.random() < 0.08:  # a double-barrelled family name
                family = f"{family}-{r.choice(N.LAST)}"
            head_dob = self.as_of - timedelta(days=r.randint(19 * 365, 60 * 365))
            self.new_person(hh, "HEAD", head_dob, last=family)
            if r.random() < 0.55:
                self.new_person(hh, "SPOUSE", head_dob + timedelta(days=r.randint(-2500, 2500)),
                                last=family)
            if r.random() < 0.05:
                self.new_person(hh, "OTHER", self.as_of - timedelta(days=r.randint(50, 80) * 365),
                                last=r.choice(N.LAST))
            kids = r.choices([0, 1, 2, 3, 4], weights=[30, 25, 22, 14, 9])[0]
            for _ in range(kids):
                # weight young ages: the lead program is about under-sixes
                age_days = r.randint(0, 7 * 365) if r.random() < 0.55 else r.randint(0, 17 * 365)
                dob = self.as_of - timedelta(days=age_days)
                child = self.new_person(hh, "CHILD", dob, last=family)
                if r.random() < 0.02:  # twins: same surname, birth date and address
                    self.new_person(hh, "CHILD", dob, last=family)
                if r.random() < 0.03:
                    child.alt_last = r.choice(N.LAST)  # custody change: a new surname later
        for p in self.persons:
            if p.relationship == "CHILD" and p.dob > self.start - timedelta(days=6 * 365):
                p.patient_id = f"{self.new_id('patient', 8)}"

    # ------------------------------------------------------------ events
    def add_test(self, p: Person, sample: date, stype: str, result: str,
                 reported: date | None = None, address: Address | None = None) -> dict:
        reported = reported or sample + timedelta(days=self.rng.randint(1, 12))
        row = {"_pid": p.tid, "_reported": reported, "_person": p,
               "_address": address or p.household.address_on(sample),
               "TEST_ID": f"T{self.new_id('test', 9)}", "SAMPLE_DATE": sample,
               "SAMPLE_TYPE": stype, "RESULT": result, "REPORTED_DATE": reported}
        self.tests.append(row)
        return row

    def add_inspection(self, address: Address, day: date, itype: str, trigger: str,
                       hazard: str, unit: str | None = "same", planted: bool = False) -> dict:
        r = self.rng
        recorded = day + timedelta(days=r.randint(0, 10))
        order = ""
        clearance = ""
        if hazard == "true":
            od = day + timedelta(days=r.randint(3, 20))
            order = od.isoformat() if od <= self.as_of else ""
            cd = day + timedelta(days=r.randint(60, 200))
            clearance = cd.isoformat() if cd <= self.as_of and r.random() < 0.6 else ""
        row = {"_recorded": recorded, "_address": address, "_planted": planted,
               "_unit": address.unit if unit == "same" else unit,
               "inspection_id": f"INS-{self.new_id('inspection', 7)}",
               "parcel_id": address.parcel, "inspection_date": day.isoformat(),
               "inspection_type": itype, "trigger": trigger, "lead_hazard_found": hazard,
               "order_issued_date": order, "clearance_date": clearance}
        self.inspections.append(row)
        return row

    def add_service(self, p: Person, provider: str, code: str, day: date, outcome: str,
                    referral: str = "") -> dict:
        r = self.rng
        cid = p.client_ids.setdefault(provider, f"{provider[0]}{self.new_id('client' + provider, 6)}")
        contract = {"HHN": "HHN-2025-014", "FSC": "FSC-2025-007", "WIC": "WIC-2025-002"}[provider]
        row = {"_pid": p.tid, "_person": p, "_recorded": day + timedelta(days=r.randint(0, 9)),
               "record_id": str(self.new_id("service" + provider, 7)), "provider_code": provider,
               "contract_id": contract, "client_id": cid, "service_code": code,
               "service_date": day, "referral_source": referral, "outcome_code": outcome}
        self.services.append(row)
        return row

    def screen_result(self) -> tuple[str, float]:
        """A screening result string as labs report it, and its value in ug/dL."""
        r = self.rng
        u = r.random()
        normal = max(0.2, 1 - 0.14 * self.lead_burden)  # the share of screens under 3.5
        if u < 0.2 * normal / 0.86:
            return r.choice(["<1.0", "< 1.0", "<2", "< 3.3", "<3.3"]), 0.0
        if u < 0.25 * normal / 0.86:
            return "None Detected", 0.0
        if u < normal:
            v = round(r.uniform(1.0, 3.4), 1)
            return f"{v}", v
        band = r.choices("ABCD", weights=[72, 19, 7, 2])[0]
        lo, hi = {"A": (3.5, 9.9), "B": (10, 19.9), "C": (20, 44.9), "D": (45, 70)}[band]
        v = round(r.uniform(lo, hi), 1)
        return f"{v}", v

    def background_events(self) -> None:
        r = self.rng
        windows = {"A": (90, 60, 90), "B": (30, 30, 30), "C": (14, 14, 14), "D": (2, 7, 7)}
        last_day = self.as_of - timedelta(days=1)
        for p in list(self.persons):
            if p.relationship != "CHILD" or p.tid in self._planted_ids:
                continue
            ages = [(12, 0.75), (24, 0.6), (36, 0.15), (48, 0.12), (60, 0.1)]
            followed_until = date.min  # a child in follow-up gets follow-up tests, not screens
            for months, prob in ages:
                day = _months(p.dob, months) + timedelta(days=r.randint(-20, 40))
                if not (self.start <= day <= last_day) or not self.chance(prob):
                    continue
                if day <= followed_until:
                    continue
                stype = r.choices("CVU", weights=[72, 18, 10])[0]
                result, value = self.screen_result()
                self.add_test(p, day, stype, result)
                if value < 3.5:
                    continue
                band = "A" if value < 10 else "B" if value < 20 else "C" if value < 45 else "D"
                conf_w, inv_w, cm_w = windows[band]
                confirm_day = day
                if stype != "V":
                    u = r.random()
                    if u < 0.6:
                        confirm_day = day + timedelta(days=r.randint(0, conf_w))
                    elif u < 0.75:
                        confirm_day = day + timedelta(days=conf_w + r.randint(5, 60))
                    else:
                        continue
                    if confirm_day > last_day:
                        continue
                    cv = round(value * r.uniform(0.6, 1.1), 1)
                    self.add_test(p, confirm_day, "V", f"{cv}")
                    if cv < 3.5:
                        continue
                    band = "A" if cv < 10 else "B" if cv < 20 else "C" if cv < 45 else "D"
                    conf_w, inv_w, cm_w = windows[band]
                u = r.random()
                addr = p.household.address_on(confirm_day)
                if u < 0.65:
                    d = confirm_day + timedelta(days=r.randint(1, inv_w))
                elif u < 0.75:
                    d = confirm_day + timedelta(days=inv_w + r.randint(3, 40))
                else:
                    d = None
                if d and d <= last_day:
                    self.add_inspection(addr, d, "LEAD_RISK_ASSESSMENT", "EBLL_REFERRAL",
                                        r.choice(["true", "true", "false"]))
                u = r.random()
                d = confirm_day + timedelta(days=r.randint(1, cm_w))
                if d <= last_day:
                    if u < 0.6:
                        self.add_service(p, "HHN", "LEAD_CASE_MGMT", d,
                                         r.choice(["COMPLETED", "IN_PROGRESS"]), "Health Dept")
                    elif u < 0.67:
                        self.add_service(p, "HHN", "LEAD_CASE_MGMT", d, "NO_SHOW", "Health Dept")
                # the follow-up test: its chance depends on the child (band, age) and on the
                # program the child joined, whose planted effect the data lab must recover
                program = self.join_program(p, band, confirm_day)
                young = age_months(p.dob, confirm_day) < 24
                chance = (0.40 + 0.12 * (band != "A") + 0.10 * young
                          + (PROGRAMS[program][2] if program else 0.0))
                retest = confirm_day + timedelta(days=r.randint(70, 170))
                if retest <= last_day and self.chance(chance):
                    self.add_test(p, retest, "V", f"{round(value * r.uniform(0.3, 0.9), 1)}")
                followed_until = confirm_day + timedelta(days=250)
                # a developmental screen after an EBLL (no program changes its chance)
                screen = confirm_day + timedelta(days=r.randint(30, 330))
                if screen <= last_day and self.chance(0.3):
                    self.add_service(p, "FSC", "DEV_SCREEN", screen, "COMPLETED", "pediatrician")
        # routine and complaint inspections across the city
        for hh in r.sample(self.households, k=min(len(self.households), max(3, self.n // 60))):
            d = self.start + timedelta(days=r.randint(0, HISTORY_DAYS - 1))
            itype, trig = r.choice([("ROUTINE", "ROUTINE"), ("COMPLAINT", "COMPLAINT"),
                                    ("LEAD_RISK_ASSESSMENT", "OTHER")])
            self.add_inspection(hh.address_on(d), d, itype, trig, r.choice(["true", "false", ""]))
        # ordinary services
        for p in self.persons:
            if p.tid in self._planted_ids:
                continue
            age = age_months(p.dob, self.as_of)
            if p.relationship == "CHILD" and 0 <= age < 60 and self.chance(0.25):
                for _ in range(r.randint(1, 3)):
                    d = self.as_of - timedelta(days=r.randint(1, min(HISTORY_DAYS, age * 30 + 1)))
                    self.add_service(p, "WIC", "NUTRITION", d,
                                     r.choice(["COMPLETED"] * 8 + ["NO_SHOW"]), "WIC clinic")
            if p.relationship == "CHILD" and 0 <= age < 72 and self.chance(0.08):
                d = self.as_of - timedelta(days=r.randint(1, 700))
                self.add_service(p, "FSC", r.choice(["HOME_VISIT", "DEV_SCREEN"]), d,
                                 r.choice(["COMPLETED", "IN_PROGRESS", "DECLINED"]), "self")
            if p.relationship == "HEAD" and self.chance(0.03):
                d = self.as_of - timedelta(days=r.randint(1, 700))
                self.add_service(p, "FSC", "HOUSING_NAV", d, "COMPLETED", "211 call")
            if p.relationship == "CHILD" and 0 <= age < 72 and self.chance(0.03):
                d = self.as_of - timedelta(days=r.randint(1, 500))
                self.add_service(p, "HHN", "HOME_VISIT", d, "COMPLETED", "pediatrician")

    # ------------------------------------------------------------ data-lab programs
    def join_program(self, p: Person, band: str, confirmed: date) -> str | None:
        """Whether a child with a confirmed EBLL joins a provider's program, and its start.

        Joining depends on the band and the child's age, as the follow-up test's own chance
        does: a naive comparison is confounded, a matched one is not.
        """
        r = self.rng
        young = age_months(p.dob, confirmed) < 24
        high = band != "A"
        reach = self.program_reach
        chances = {"HHN": reach * (0.12 + 0.08 * high + 0.04 * young),
                   "FSC": reach * (0.10 + 0.04 * young),
                   "WIC": reach * (0.08 + 0.03 * young + 0.02 * high)}
        u, program = r.random(), None
        for code, c in chances.items():
            if u < c:
                program = code
                break
            u -= c
        start = confirmed + timedelta(days=r.randint(7, 60))
        if program is None or start > self.as_of - timedelta(days=1):
            return None
        self.lab_clients.setdefault(program, []).append((p, start))
        self.lab_chances.setdefault(program, []).append(chances)
        self.add_service(p, program, PROGRAMS[program][1], start, "COMPLETED", "Health Dept")
        return program

    def cohort_rows(self, code: str) -> list[dict]:
        """The provider's request: everyone it served in the program, as its own system has
        them, plus a few it served who are in no city record (they cannot be linked)."""
        r = self.rng
        served = list(self.lab_clients.get(code, []))
        city_names = {n for q in self.persons for n in (q.last, q.alt_last) if n}
        for _ in range(max(3, len(served) // 30)):  # never tested, never enrolled in the city
            hh = Household(f"H{self.new_id('household', 7)}", self.new_address(), assisted=False)
            # a family name no city record holds, so a search for it finds only this request
            last = f"{r.choice(N.LAST)}-{r.choice(N.LAST)}"
            while last in city_names:
                last = f"{r.choice(N.LAST)}-{r.choice(N.LAST)}"
            city_names.add(last)
            kid = Person(f"TL{self.new_id('labonly', 8)}", r.choice(N.FIRST_F + N.FIRST_M), "",
                         last, self.as_of - timedelta(days=r.randint(300, 1800)),
                         r.choice("MF"), hh, "CHILD")
            hh.members.append(kid)
            served.append((kid, self.as_of - timedelta(days=r.randint(30, 600))))
        r.shuffle(served)
        rows = []
        for p, start in served:
            dob = self.messy_dob(p.dob)
            addr = p.household.address_on(start)
            in_city = p.tid.startswith("TP")
            rows.append({
                "record_id": f"{code}-{self.new_id('lab' + code, 6)}",
                "client_first_name": self.messy_first(p),
                "client_last_name": self.messy_last(p) if in_city else p.last,
                "client_dob": dob.isoformat() if dob else "",
                "client_address": self.street_line(addr), "client_zip": self.zip_field(addr.zip),
                "program_start": start.isoformat(), "program": PROGRAMS[code][0],
                "_pid": p.tid, "_in_city": in_city,
            })
        return rows

    # ------------------------------------------------------------ planted cases
    def planted_family(self, case: str, child_age_days: int, first: str | None = None,
                       last: str | None = None, twins: bool = False,
                       assisted: bool = False) -> list[Person]:
        hh = Household(f"H{self.new_id('household', 7)}", self.new_address(), assisted=assisted)
        if case == "OTHER_UNIT" or hh.address.unit is None:
            hh.address.unit = "3" if case == "OTHER_UNIT" else hh.address.unit
        self.households.append(hh)
        family = last or self.rng.choice(N.LAST)
        self.new_person(hh, "HEAD", self.as_of - timedelta(days=30 * 365), last=family)
        dob = self.as_of - timedelta(days=child_age_days)
        kids = [self.new_person(hh, "CHILD", dob, last=family)]
        if first:
            kids[0].first = first
        if twins:
            kids.append(self.new_person(hh, "CHILD", dob, last=family))
            while kids[1].first == kids[0].first:
                kids[1].first = self.rng.choice(N.FIRST_F + N.FIRST_M)
        for k in kids:
            k.patient_id = f"{self.new_id('patient', 8)}"
            self._planted_ids.add(k.tid)
        return kids

    def expect(self, case: str, p: Person, rule: str, agency: str, band: str, expected: str,
               note: str) -> None:
        self.planted.append({"case": case, "true_person_id": p.tid, "rule_code": rule,
                             "assigned_agency": agency, "band": band, "expected": expected,
                             "note": note})

    def plant_cases(self) -> None:
        """Children whose alerts are known in advance: the end-to-end test checks them."""
        A = self.as_of
        ago = lambda n: A - timedelta(days=n)
        conf, env, cm = ("CONFIRMATORY_TEST_OVERDUE", "ENVIRONMENTAL_INVESTIGATION_OVERDUE",
                         "CASE_MANAGEMENT_OVERDUE")
        # Freddie Gray's pattern: 11 capillary at 12 months, 37 venous at 22 months, nothing done.
        (f,) = self.planted_family("FREDDIE_GRAY", 730, assisted=True)
        self.add_test(f, _months(f.dob, 12), "C", "11.0")
        self.add_test(f, _months(f.dob, 22), "V", "37")
        self.expect("FREDDIE_GRAY", f, env, "housing", "C", "OPEN", "venous 37 at 22 months")
        self.expect("FREDDIE_GRAY", f, cm, "providers", "C", "OPEN", "no case management")
        self.expect("FREDDIE_GRAY", f, conf, "health", "", "NONE", "venous test came later")

        (c,) = self.planted_family("CAPILLARY_ONLY", 500)
        self.add_test(c, ago(120), "C", "6.2")
        self.expect("CAPILLARY_ONLY", c, conf, "health", "A", "OPEN", "no venous in 90 days")
        self.expect("CAPILLARY_ONLY", c, env, "housing", "", "NONE", "not confirmed")

        (w,) = self.planted_family("WELL_MANAGED", 600)
        self.add_test(w, ago(120), "C", "14.0")
        self.add_test(w, ago(110), "V", "12.5")
        addr = w.household.address
        self.add_inspection(addr, ago(95), "LEAD_RISK_ASSESSMENT", "EBLL_REFERRAL", "true",
                            planted=True)
        self.add_service(w, "HHN", "LEAD_CASE_MGMT", ago(100), "COMPLETED", "Health Dept")
        for rule, agency in ((conf, "health"), (env, "housing"), (cm, "providers")):
            self.expect("WELL_MANAGED", w, rule, agency, "", "NONE", "every step in time")

        (n,) = self.planted_family("NO_SHOW", 900)
        self.add_test(n, ago(150), "V", "8.0")
        self.add_inspection(n.household.address, ago(120), "LEAD_RISK_ASSESSMENT",
                            "EBLL_REFERRAL", "false", planted=True)
        self.add_service(n, "HHN", "LEAD_CASE_MGMT", ago(140), "NO_SHOW", "Health Dept")
        self.expect("NO_SHOW", n, cm, "providers", "A", "OPEN", "only a no-show")
        self.expect("NO_SHOW", n, env, "housing", "", "NONE", "inspected in time")

        (o,) = self.planted_family("OTHER_UNIT", 800)
        self.add_test(o, ago(60), "V", "22.0")
        self.add_inspection(o.household.address, ago(50), "LEAD_RISK_ASSESSMENT",
                            "EBLL_REFERRAL", "false", unit="1", planted=True)
        self.add_service(o, "HHN", "LEAD_CASE_MGMT", ago(55), "IN_PROGRESS", "Health Dept")
        self.expect("OTHER_UNIT", o, env, "housing", "C", "OPEN", "inspected unit 1, lives in 3")
        self.expect("OTHER_UNIT", o, cm, "providers", "", "NONE", "case management started")

        t1, t2 = self.planted_family("TWINS", 1000, twins=True)
        self.add_test(t1, ago(70), "V", "15.0")
        self.add_test(t2, ago(70), "C", "<1.0")
        self.expect("TWINS", t1, env, "housing", "B", "OPEN", "elevated twin")
        self.expect("TWINS", t1, cm, "providers", "B", "OPEN", "elevated twin")
        self.expect("TWINS", t2, cm, "providers", "", "NONE", "twin with a normal test")
        self.expect("TWINS", t2, conf, "health", "", "NONE", "twin with a normal test")

        (z,) = self.planted_family("ACCENTED", 700, first="Zoë", last="Peña")
        # reported late so that it lands in the Windows-1252 weekly file
        self.add_test(z, ago(35), "C", "12.0", reported=ago(10))
        self.expect("ACCENTED", z, conf, "health", "B", "OPEN", "Windows-1252 delivery")

        (s,) = self.planted_family("CENSORED", 650)
        self.add_test(s, ago(100), "C", "<3.5")
        self.expect("CENSORED", s, conf, "health", "", "NONE", "censored below 3.5")

        (k,) = self.planted_family("CORRECTED", 680)
        first = self.add_test(k, ago(100), "C", "4.1", reported=ago(97))
        corr = dict(first, RESULT="3.1", _reported=ago(12), REPORTED_DATE=ago(12))
        self.tests.append(corr)
        self.expect("CORRECTED", k, conf, "health", "", "NONE", "corrected to 3.1")

        (y,) = self.planted_family("NOT_YET_DUE", 720)
        self.add_test(y, ago(5), "V", "25.0", reported=ago(3))
        self.expect("NOT_YET_DUE", y, env, "housing", "", "NONE", "due in 9 days")

        (g,) = self.planted_family("TOO_OLD", 6 * 365 + 200)
        self.add_test(g, ago(60), "V", "15.0")
        self.expect("TOO_OLD", g, env, "housing", "", "NONE", "77 months at the sample")

        # rule 4: schools. A child on the roster in PK3-03 with no IEP or 504 plan, 30 days
        # after the later of the confirmation and the school entry date.
        lsr = "LEARNING_SUPPORT_REVIEW_OVERDUE"
        school_cases = [
            # case, age in days, test days ago, result, band, grade, entry days ago, exit days
            # ago, IEP in the older / newest snapshot, expected
            ("SCHOOL_K", 2000, 200, "12.0", "B", "K", 280, None, "N", "N", "OPEN"),
            ("SCHOOL_IEP_LATER", 2000, 200, "8.0", "A", "K", 280, None, "N", "Y", "NONE"),
            ("SCHOOL_GRADE_04", 3470, 1460, "6.0", "A", "04", 280, None, "N", "N", "NONE"),
            ("SCHOOL_EXITED", 2000, 200, "15.0", "B", "K", 280, 8, "N", "N", "NONE"),
            ("SCHOOL_ENTERED_LATER", 1500, 400, "9.0", "A", "PK4", 60, None, "N", "N", "OPEN"),
            ("SCHOOL_NOT_YET_DUE", 1500, 400, "9.0", "A", "PK4", 20, None, "N", "N", "NONE"),
        ]
        for case, age, tested, result, band, grade, entry, exited, iep_old, iep_now, want in (
                school_cases):
            (sc,) = self.planted_family(case, age)
            self.add_test(sc, ago(tested), "V", result)
            sc.school = {"grade": grade, "entry": ago(entry),
                         "exit": ago(exited) if exited is not None else None,
                         "iep_old": iep_old, "iep_now": iep_now}
            self.expect(case, sc, lsr, "schools", band if want == "OPEN" else "", want,
                        f"{grade}, entered {entry} days ago, IEP {iep_old}->{iep_now}")

    # ------------------------------------------------------------ mess
    def typo(self, s: str) -> str:
        r = self.rng
        if len(s) < 3:
            return s
        i = r.randint(1, len(s) - 2)
        op = r.randint(0, 3)
        if op == 0:
            return s[:i] + s[i + 1] + s[i] + s[i + 2:]
        if op == 1:
            return s[:i] + s[i + 1:]
        if op == 2:
            return s[:i] + r.choice("aeiourstnl") + s[i + 1:]
        return s[:i] + s[i] + s[i:]

    def messy_first(self, p: Person, ascii_only: bool = False) -> str:
        name = p.first
        if self.chance(0.05 * self.mess):
            nicks = sorted(_NICKNAMER.nicknames_of(name.lower()))
            if nicks:
                name = self.rng.choice(nicks).title()
        if self.chance(0.02 * self.mess):
            name = self.typo(name)
        return self.case(unidecode(name) if ascii_only else name)

    def messy_last(self, p: Person, late: bool = False, ascii_only: bool = False) -> str:
        r = self.rng
        name = p.last
        if p.alt_last and (late if p.relationship == "CHILD" else self.chance(0.4)):
            name = p.alt_last
        if "-" in name and self.chance(0.3 * self.mess):
            a, b = name.split("-", 1)
            name = r.choice([a, f"{a} {b}", f"{a}{b}"])
        if self.chance(0.02 * self.mess):
            name = self.typo(name)
        return self.case(unidecode(name) if ascii_only else name)

    def case(self, s: str) -> str:
        u = self.rng.random()
        return s.upper() if u < 0.15 else s.lower() if u < 0.18 else s

    def messy_dob(self, d: date) -> date | None:
        r = self.rng
        if self.chance(0.01 * self.mess):
            return None
        if self.chance(0.015 * self.mess):
            op = r.randint(0, 2)
            if op == 0 and d.day <= 12:
                return date(d.year, d.day, d.month)
            if op == 1:
                return d + timedelta(days=r.choice([-1, 1]))
            try:
                return d.replace(year=d.year + r.choice([-1, 1]))
            except ValueError:
                return d
        return d

    def street_line(self, a: Address, with_unit: bool = True, planted: bool = False) -> str:
        """The street line as a partner typed it. A planted case's line keeps every letter of
        the street (its spelling may vary, never its name), so the case tests the rule it was
        planted for and not the address matching."""
        r = self.rng
        if not planted and self.chance(0.01 * self.mess):
            return ""
        parts = [str(a.number)]
        if a.predir:
            parts.append(N.DIRECTIONS[a.predir] if r.random() < 0.4 else a.predir)
        street = a.street
        if not planted and self.chance(0.02 * self.mess):
            street = self.typo(street)
        parts.append(street)
        st = r.random()
        parts.append(N.STREET_TYPE_LONG[a.stype] if st < 0.4 else a.stype + "." if st < 0.5 else a.stype)
        line = " ".join(parts)
        if with_unit and a.unit and not self.chance(0.05 * self.mess):
            line += r.choice([" Apt {}", " APT {}", ", Apt. {}", " #{}", " Unit {}", " # {}"]).format(a.unit)
        return self.case(line)

    def unit_field(self, unit: str | None) -> str:
        if not unit:
            return ""
        return self.rng.choice(["{}", "Apt {}", "#{}", "Unit {}", "APT {}"]).format(unit)

    def zip_field(self, z: str) -> str:
        return f"{z}-{self.rng.randint(1000, 9999)}" if self.chance(0.2) else z

    # ------------------------------------------------------------ rendering rows
    def health_row(self, t: dict) -> dict:
        r = self.rng
        p: Person = t["_person"]
        dob = self.messy_dob(p.dob)
        guardian = next((m for m in p.household.members if m.relationship == "HEAD"), None)
        patient = p.patient_id if p.patient_id and not self.chance(0.1) else ""
        return {
            "TEST_ID": t["TEST_ID"], "PATIENT_ID": patient,
            "PAT_FIRST_NAME": self.messy_first(p), "PAT_MIDDLE_NAME": p.middle if self.chance(0.3) else "",
            "PAT_LAST_NAME": self.messy_last(p, late=t["SAMPLE_DATE"] > self.as_of - timedelta(days=200)),
            "PAT_DOB": dob.strftime("%m/%d/%Y") if dob else "",
            "PAT_SEX": p.sex if not self.chance(0.03) else "U",
            "PAT_ADDRESS": self.street_line(t["_address"],
                                            planted=t["_pid"] in self._planted_ids), "PAT_CITY": self.case("Baltimore"),
            "PAT_ZIP": self.zip_field(t["_address"].zip),
            "GUARDIAN_NAME": f"{guardian.last.upper()}, {guardian.first.upper()}" if guardian and self.chance(0.4) else "",
            "MEDICAID_ID": p.medicaid if p.medicaid and self.chance(0.6) else "",
            "SAMPLE_DATE": t["SAMPLE_DATE"].strftime("%m/%d/%Y"), "SAMPLE_TYPE": t["SAMPLE_TYPE"],
            "RESULT": t["RESULT"], "UNITS": "ug/dL",
            "LOINC": {"V": "77307-7", "C": "10368-9"}.get(t["SAMPLE_TYPE"], "5671-3"),
            "LAB_NAME": r.choice(N.LABS + ["Quest Diagnostics, Inc."]),
            "ORDERING_PROVIDER": r.choice(N.PROVIDERS),
            "REPORTED_DATE": t["REPORTED_DATE"].strftime("%m/%d/%Y"),
        }

    def service_row(self, s: dict) -> dict:
        p: Person = s["_person"]
        code = s["provider_code"]
        dob = self.messy_dob(p.dob)
        addr = p.household.address_on(s["service_date"])
        fmt = PROVIDER_DOB_FORMAT[code]
        return {k: v for k, v in s.items() if not k.startswith("_")} | {
            "client_first_name": self.messy_first(p), "client_last_name": self.messy_last(p),
            "client_dob": dob.strftime(fmt) if dob else "",
            "client_gender": PROVIDER_GENDER[code][p.sex] if not self.chance(0.05) else "",
            "client_address": self.street_line(addr), "client_zip": self.zip_field(addr.zip),
            "service_date": s["service_date"].strftime(fmt),
        }

    def resident_rows(self, snapshot: date, current: bool) -> list[dict]:
        rows = []
        for hh in self.households:
            if not hh.assisted or (current and hh.left_assisted and not self.chance(0.5)):
                continue
            addr = hh.address_on(snapshot)
            move_in = (hh.moved_on if hh.moved_on and snapshot >= hh.moved_on else
                       self.start - timedelta(days=400))
            move_out = ""
            if current and hh.left_assisted:
                move_out = (snapshot - timedelta(days=9)).isoformat()
            for seq, p in enumerate(hh.members, start=1):
                if p.dob > snapshot:
                    continue
                dob = self.messy_dob(p.dob)
                rows.append({
                    "household_id": hh.hid, "member_seq": str(seq),
                    "first_name": self.messy_first(p), "last_name": self.messy_last(p),
                    "dob": dob.isoformat() if dob else "", "relationship": p.relationship,
                    "parcel_id": addr.parcel, "address": self.street_line(addr, with_unit=False),
                    "unit": self.unit_field(addr.unit), "zip": self.zip_field(addr.zip),
                    "move_in_date": max(move_in, p.dob).isoformat(), "move_out_date": move_out,
                    "_pid": p.tid,
                })
        return rows

    def enrollment_rows(self, snapshot: date, current: bool) -> list[dict]:
        r = self.rng
        rows = []
        for p in self.persons:
            if p.relationship != "CHILD":
                continue
            if p.school is not None:
                if p.school["entry"] <= snapshot:
                    rows.append(self.planted_enrollment_row(p, snapshot, current))
                continue
            school_year = snapshot.year if snapshot.month >= 9 else snapshot.year - 1
            age_sept = age_months(p.dob, date(school_year, 9, 1)) // 12
            if not 3 <= age_sept <= 17:
                continue
            grade = {3: "PK3", 4: "PK4", 5: "K"}.get(age_sept, f"{age_sept - 5:02d}")
            keep = {3: 0.5, 4: 0.75}.get(age_sept, 0.93)
            # deterministic per child and snapshot so the two snapshots mostly agree
            h = random.Random(f"{p.tid}-enrolled").random()
            if h > keep or (current and random.Random(f"{p.tid}-left").random() < 0.03):
                continue
            if p.student_id is None:
                p.student_id = f"{self.new_id('student', 8)}"
            code, name = N.SCHOOLS[int(p.household.hid[1:]) % len(N.SCHOOLS)]
            addr = p.household.address_on(snapshot)
            dob = self.messy_dob(p.dob)
            guardian = next((m for m in p.household.members if m.relationship == "HEAD"), p)
            ascii_only = r.random() < 0.3
            rows.append({
                "StudentID": p.student_id, "FirstName": self.messy_first(p, ascii_only),
                "MiddleName": p.middle if self.chance(0.5) else "",
                "LastName": self.messy_last(p, late=current, ascii_only=ascii_only),
                "BirthDate": dob.strftime("%Y%m%d") if dob else "",
                "Gender": {"M": "Male", "F": "Female"}[p.sex] if not self.chance(0.04) else "",
                "HomeAddress": self.street_line(addr), "City": "Baltimore",
                "Zip": self.zip_field(addr.zip), "SchoolCode": code, "SchoolName": name,
                "GradeLevel": grade,
                "EntryDate": max(p.dob + timedelta(days=3 * 365), date(school_year, 8, 28)).strftime("%Y%m%d"),
                "ExitDate": "", "IEP": "Y" if self.chance(0.12) else "N",
                "Section504": "Y" if self.chance(0.05) else "N",
                "AttendanceRate": f"{r.uniform(70, 100):.1f}" if not self.chance(0.05) else "",
                "GuardianName": f"{guardian.first} {guardian.last}", "_pid": p.tid,
            })
        return rows

    def planted_enrollment_row(self, p: Person, snapshot: date, current: bool) -> dict:
        """A planted child's roster row, exactly as its case says (names kept clean)."""
        if p.student_id is None:
            p.student_id = f"{self.new_id('student', 8)}"
        code, name = N.SCHOOLS[int(p.household.hid[1:]) % len(N.SCHOOLS)]
        addr = p.household.address_on(snapshot)
        plan = p.school or {}
        exited = plan["exit"] if current and plan["exit"] else None
        return {
            "StudentID": p.student_id, "FirstName": p.first, "MiddleName": "",
            "LastName": p.last, "BirthDate": p.dob.strftime("%Y%m%d"),
            "Gender": {"M": "Male", "F": "Female"}[p.sex],
            "HomeAddress": f"{addr.canonical()}" + (f" APT {addr.unit}" if addr.unit else ""),
            "City": "Baltimore", "Zip": addr.zip, "SchoolCode": code, "SchoolName": name,
            "GradeLevel": plan["grade"], "EntryDate": plan["entry"].strftime("%Y%m%d"),
            "ExitDate": exited.strftime("%Y%m%d") if exited else "",
            "IEP": plan["iep_now"] if current else plan["iep_old"], "Section504": "N",
            "AttendanceRate": "95.0",
            "GuardianName": next((f"{m.first} {m.last}" for m in p.household.members
                                  if m.relationship == "HEAD"), ""),
            "_pid": p.tid,
        }

    def run(self) -> None:
        self._planted_ids: set[str] = set()
        self.build_population()
        self.plant_cases()
        self.background_events()


_NICKNAMER = None


def _nicknamer():
    global _NICKNAMER
    if _NICKNAMER is None:
        from nicknames import NickNamer

        _NICKNAMER = NickNamer()
    return _NICKNAMER


# ---------------------------------------------------------------- writing files


def _write_csv(path: Path, cols: list[str], rows: list[dict], rng: random.Random,
               encoding: str = "utf-8", bad: list[tuple[dict, str]] | None = None,
               rejects: list[dict] | None = None, landing: Path | None = None) -> None:
    """Write one delivery: columns in a shuffled order (the contract does not fix it)."""
    order = cols[:]
    rng.shuffle(order)
    rows = [{c: r.get(c, "") for c in cols} for r in rows]
    bad_at: dict[int, tuple[dict, str]] = {}
    for b in bad or []:
        bad_at[rng.randint(0, len(rows))] = b
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=order, lineterminator="\n")
    w.writeheader()
    line = 1
    for i in range(len(rows) + 1):
        if i in bad_at:
            brow, fld = bad_at[i]
            line += 1
            w.writerow({c: brow.get(c, "") for c in cols})
            if rejects is not None:
                rejects.append({"file": str(path.relative_to(landing)), "line": line, "field": fld})
        if i < len(rows):
            line += 1
            w.writerow(rows[i])
    path.parent.mkdir(parents=True, exist_ok=True)
    # a Windows-1252 system writes "?" for what it cannot encode (Dvořák -> Dvo?ák)
    path.write_bytes(buf.getvalue().encode(encoding, errors="replace"))


def _bucket(extracts: list[date], day: date) -> date | None:
    """The extract a record reported/recorded on `day` goes out in (None: not yet)."""
    for e in extracts:
        if day <= e:
            return e
    return None


def usual_care_effect(city: City, code: str) -> float:
    """The effect the data lab estimates: the program against what similar children otherwise
    got. A comparison child like one of the program's, had it not joined this program, would
    have joined another with that program's chance (given not this one), and got its effect;
    the planted effect is against no program at all."""
    clients = city.lab_chances.get(code, [])
    if not clients:
        return PROGRAMS[code][2]
    others = []
    for chances in clients:
        rest = 1 - chances[code]
        others.append(sum(PROGRAMS[y][2] * c / rest for y, c in chances.items() if y != code))
    return PROGRAMS[code][2] - sum(others) / len(others)


def generate_city(out: Path, people: int = 1000, seed: int = 1, as_of: date | None = None,
                  mess: str = "normal", lead_burden: float = 1.0,
                  program_reach: float = 1.0) -> dict:
    _nicknamer()
    as_of = as_of or date.today()
    city = City(people, seed, as_of, MESS_LEVELS[mess], lead_burden, program_reach)
    city.run()
    landing, truth = out / "landing", out / "ground_truth"
    landing.mkdir(parents=True, exist_ok=True)
    truth.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed * 7919 + 1)
    records: list[tuple[str, str, str]] = []
    rejects: list[dict] = []
    stamp = lambda d: d.strftime("%Y%m%d")
    E = city.extracts
    mess_on = city.mess > 0

    # health: the second-newest weekly file comes from the Windows-1252 system
    by_file: dict[date, list[dict]] = {}
    for t in city.tests:
        e = _bucket(E, t["_reported"])
        if e is not None:
            by_file.setdefault(e, []).append(t)
    seen_tests: set[str] = set()
    for e in E:
        rows = [city.health_row(t) for t in sorted(by_file.get(e, []), key=lambda t: t["_reported"])]
        for t in by_file.get(e, []):
            if t["TEST_ID"] not in seen_tests:
                seen_tests.add(t["TEST_ID"])
                records.append(("health", t["TEST_ID"], t["_pid"]))
        bad = []
        if mess_on and rows:
            tpl = dict(rng.choice(rows))
            kind = rng.randint(0, 2)
            tpl["TEST_ID"] = f"T{city.new_id('test', 9)}"
            if kind == 0:
                tpl["SAMPLE_DATE"] = f"02/30/{e.year}"
                bad.append((tpl, "SAMPLE_DATE"))
            elif kind == 1:
                tpl["RESULT"] = "high"
                bad.append((tpl, "RESULT"))
            else:
                tpl["TEST_ID"] = ""
                bad.append((tpl, "TEST_ID"))
        enc = "cp1252" if e == E[-2] else "utf-8"
        _write_csv(landing / "health" / f"blood_lead_{stamp(e)}.csv", HEALTH_COLS, rows, rng,
                   enc, bad, rejects, landing)

    # housing inspections
    by_file = {}
    for i in city.inspections:
        e = _bucket(E, i["_recorded"])
        if e is not None:
            by_file.setdefault(e, []).append(i)
    for e in E:
        rows = []
        for i in by_file.get(e, []):
            a = i["_address"]
            rows.append(i | {"address": city.street_line(a, with_unit=False,
                                                         planted=i.get("_planted", False)),
                             "unit": city.unit_field(i["_unit"]), "zip": city.zip_field(a.zip)})
        bad = []
        if mess_on and rows and e == E[-1]:
            tpl = dict(rng.choice(rows), inspection_id=f"INS-{city.new_id('inspection', 7)}",
                       inspection_date=f"{e.year}-13-45")
            bad.append((tpl, "inspection_date"))
        _write_csv(landing / "housing" / f"inspections_{stamp(e)}.csv", INSPECTION_COLS, rows,
                   rng, bad=bad, rejects=rejects, landing=landing)

    # housing residents and school enrollment: an older and a current full snapshot
    seen: set[str] = set()
    for snap, current in ((E[0], False), (E[-1], True)):
        rows = city.resident_rows(snap, current)
        for r in rows:
            key = f"{r['household_id']}-{r['member_seq']}"
            if key not in seen:
                seen.add(key)
                records.append(("housing", key, r["_pid"]))
        _write_csv(landing / "housing" / f"residents_{stamp(snap)}.csv", RESIDENT_COLS, rows, rng)
    seen = set()
    for snap, current in ((E[0], False), (E[-1], True)):
        rows = city.enrollment_rows(snap, current)
        for r in rows:
            if r["StudentID"] not in seen:
                seen.add(r["StudentID"])
                records.append(("schools", r["StudentID"], r["_pid"]))
        bad = []
        if mess_on and rows and current:
            tpl = dict(rng.choice(rows), StudentID=f"{city.new_id('student', 8)}",
                       BirthDate=f"{snap.year - 4}0231")
            bad.append((tpl, "BirthDate"))
        _write_csv(landing / "schools" / f"enrollment_{stamp(snap)}.csv", ENROLLMENT_COLS, rows,
                   rng, bad=bad, rejects=rejects, landing=landing)

    # providers: one file per provider per extract
    by_file2: dict[tuple[str, date], list[dict]] = {}
    for s in city.services:
        e = _bucket(E, s["_recorded"])
        if e is not None:
            by_file2.setdefault((s["provider_code"], e), []).append(s)
    for code in ("HHN", "FSC", "WIC"):
        for e in E:
            batch = by_file2.get((code, e), [])
            rows = [city.service_row(s) for s in batch]
            for s in batch:
                records.append(("providers", f"{code}-{s['record_id']}", s["_pid"]))
            bad = []
            if mess_on and rows and e == E[-1]:
                tpl = dict(rng.choice(rows), record_id=str(city.new_id("service" + code, 7)),
                           service_code="HOMEVISIT")
                bad.append((tpl, "service_code"))
            _write_csv(landing / "providers" / f"services_{code}_{stamp(e)}.csv", SERVICE_COLS,
                       rows, rng, bad=bad, rejects=rejects, landing=landing)
    contracts = [dict(zip(CONTRACT_COLS, (cid, code, name, codes,
                                          (as_of - timedelta(days=HISTORY_DAYS)).isoformat(),
                                          (as_of + timedelta(days=365)).isoformat(), str(amount), target)))
                 for cid, code, name, codes, amount, target in CONTRACTS]
    _write_csv(landing / "providers" / f"contracts_{stamp(E[0])}.csv", CONTRACT_COLS, contracts, rng)
    for agency in ("health", "housing", "providers", "schools"):
        (landing / "feedback" / agency).mkdir(parents=True, exist_ok=True)
    (landing / "datalab").mkdir(parents=True, exist_ok=True)
    # data-lab requests: each program's provider asks what its program changed
    lab_truth = []
    for code, (program, _, effect) in PROGRAMS.items():
        rows = city.cohort_rows(code)
        target = landing / "datalab" / code / f"cohort_{stamp(as_of)}.csv"
        _write_csv(target, DATALAB_COLS, rows, rng)
        lab_truth.append((code, program, str(target.relative_to(landing)), "follow_up_test_180d",
                          f"{effect:+.2f}", f"{usual_care_effect(city, code):+.4f}", len(rows),
                          sum(1 for x in rows if x["_in_city"])))
        cohort_truth = [(code, x["record_id"], x["_pid"], x["_in_city"], x["client_first_name"],
                         x["client_last_name"], x["client_dob"]) for x in rows]
        with open(truth / f"datalab_{code}.csv", "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(["provider", "record_id", "true_person_id", "in_city", "first_name",
                        "last_name", "dob"])
            w.writerows(cohort_truth)

    # ground truth
    def write_truth(name: str, cols: list[str], rows: list) -> None:
        with open(truth / name, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(cols)
            w.writerows(rows)

    write_truth("persons.csv", ["true_person_id", "first_name", "last_name", "dob", "sex",
                                "relationship", "household_id"],
                [(p.tid, p.first, p.last, p.dob.isoformat(), p.sex, p.relationship,
                  p.household.hid) for p in city.persons])
    write_truth("records.csv", ["source", "record_key", "true_person_id"], records)
    write_truth("planted_cases.csv", list(city.planted[0]), [list(c.values()) for c in city.planted])
    write_truth("datalab_programs.csv", ["provider", "program", "file", "outcome_id",
                                         "planted_effect", "usual_care_effect", "cohort_rows",
                                         "in_city"], lab_truth)
    write_truth("expected_rejects.csv", ["file", "line", "field"],
                [(r["file"], r["line"], r["field"]) for r in rejects])
    return {"landing": landing, "ground_truth": truth, "people": len(city.persons),
            "records": len(records), "files": sum(1 for _ in landing.rglob("*.csv"))}
