-- The data lab's population: one row per confirmed EBLL of a child (an episode), with what the
-- matching uses. Pseudonymous: person_id, ages in months, ZIP, counts. The lab picks each cohort
-- member's episode before the program start, and each comparison child's first episode.
with confirmations as (
    select * from {{ ref('int_lead_confirmations') }}
),

tests as (
    select * from {{ ref('int_lead_tests_classified') }}
),

bands as (
    select * from {{ ref('lead_bands') }}
),

persons as (
    select * from {{ ref('stg_linkage__persons') }}
)

select
    c.person_id,
    c.confirmation_date,
    c.band,
    b.lower_ug_dl as band_lower_ug_dl,
    t.age_months,
    coalesce(p.sex, 'U') as sex,
    c.zip5,
    (
        select count(*) from tests as earlier
        where earlier.person_id = c.person_id and earlier.sample_date < c.confirmation_date
    ) as prior_tests,
    row_number() over (
        partition by c.person_id order by c.confirmation_date, c.confirming_test_key
    ) as episode_number
from confirmations as c
inner join tests as t on t.test_key = c.confirming_test_key
inner join bands as b on b.band = c.band
left join persons as p on p.person_id = c.person_id
